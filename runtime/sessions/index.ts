export { AuditWriteError, Session, SpawnError, SessionEndedError } from './session';
export type { EndReason, PreparedSandbox, SessionOptions, SpawnOptions } from './session';
export { SandboxProcess, signalName, signalNumber } from './process';
export type { ProcessExit } from './process';
export { buildEnv, SANDBOX_HOME, SANDBOX_PATH } from './env';
