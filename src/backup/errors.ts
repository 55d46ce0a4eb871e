// Operating errors of backup and restore, each naming what failed (an object, a flag, a site).
export type BackupErrorCode =
  | 'bad-key-file'
  | 'missing-key'
  | 'missing-object'
  | 'corrupt-object'
  | 'no-restore-point'
  | 'target-failed'
  | 'not-closed'
  | 'refused'
  | 'bad-input';

export class BackupError extends Error {
  override name = 'BackupError';
  constructor(
    readonly code: BackupErrorCode,
    message: string,
    /** the object this is about, when one is */
    readonly object?: string,
  ) {
    super(message);
  }
}
