// An HTTP proxy on loopback in front of a real S3-compatible server, for tests: every request passes
// through untouched (its signed headers too), except those a fault names, which get the answer a
// flaky endpoint gives (500 InternalError) without reaching the server. It counts what it saw, so
// a test knows which S3 calls a target made.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One S3 call as the proxy saw it. */
export interface S3Call {
  method: string;
  /** the path, without the query */
  path: string;
  query: URLSearchParams;
  /** CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, or `${method} object` */
  kind: string;
  /** answered by the proxy itself (an injected fault) */
  failed: boolean;
}

function kindOf(method: string, q: URLSearchParams): string {
  if (method === 'POST' && q.has('uploads')) return 'CreateMultipartUpload';
  if (method === 'PUT' && q.has('partNumber')) return 'UploadPart';
  if (method === 'POST' && q.has('uploadId')) return 'CompleteMultipartUpload';
  if (method === 'DELETE' && q.has('uploadId')) return 'AbortMultipartUpload';
  if (method === 'GET' && q.has('uploads')) return 'ListMultipartUploads';
  return `${method} object`;
}

export class S3FaultProxy {
  readonly calls: S3Call[] = [];
  /** requests for which this returns true are answered 500 InternalError (each SDK retry too) */
  fail: (call: S3Call) => boolean = () => false;
  private server: Server | undefined;

  constructor(private readonly upstream: { host: string; port: number }) {}

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const call: S3Call = { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, kind: kindOf(req.method ?? 'GET', url.searchParams), failed: false };
    this.calls.push(call);
    if (this.fail(call)) {
      call.failed = true;
      req.resume();
      req.on('end', () => {
        res.writeHead(500, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected by the test proxy</Message></Error>');
      });
      return;
    }
    const out = request({ host: this.upstream.host, port: this.upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
