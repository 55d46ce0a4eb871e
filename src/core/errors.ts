// Operating errors of the data API: typed, with the HTTP status they map to and the path of the
// input that was wrong. (Programmer errors are AssertionError and crash.)
export interface FieldProblem {
  path: string;
  message: string;
}

export class RequestError extends Error {
  override name = 'RequestError';
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 405 | 409 | 410 | 412 | 413 | 415 | 422 | 428 | 503 | 504,
    readonly type: string,
    readonly title: string,
    detail: string,
    readonly errors: FieldProblem[] = [],
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail);
  }

  static badRequest(detail: string, errors: FieldProblem[] = []): RequestError {
    return new RequestError(400, 'bad-request', 'Bad request', detail, errors);
  }
  static wrongKind(path: string, message: string): RequestError {
    return new RequestError(409, 'wrong-field-kind', 'Operation of the wrong kind for this field', message, [{ path, message }]);
  }
  static notFound(detail: string): RequestError {
    return new RequestError(404, 'not-found', 'Not found', detail);
  }
  static preconditionFailed(detail: string): RequestError {
    return new RequestError(412, 'precondition-failed', 'Precondition failed', detail);
  }
  static tooLarge(detail: string): RequestError {
    return new RequestError(413, 'too-large', 'Payload too large', detail);
  }
  static unavailable(type: string, detail: string, retryAfterS = 1): RequestError {
    return new RequestError(503, type, 'Service unavailable', detail, [], { retryAfterS });
  }
}
