/** The runtime as a library (dist/runtime.js): what the daemon, MCP server and benchmarks import. */
export { AuditLog, readAuditFile, verifyAuditFile, sessionRecords } from './audit';
export { BwrapDriver, findBwrap } from './drivers/bwrap/driver';
export { buildBwrapArgs } from './drivers/bwrap/args';
export { resolvePolicy, loadPolicyFile, validatePolicyDocument } from './policy/policy';
export type { Policy, PolicyDocument } from './policy/policy';
export { planWorkspace } from './policy/workspace';
export { Session, SpawnError, SandboxProcess } from './sessions';
export { buildSeccompFilter } from './drivers/bwrap/seccomp';
export { prepareFiles } from './drivers/bwrap/files';
export { sandboxIdentity } from './drivers/bwrap/system';
export { RuntimeClient } from './client/client';
export { startDaemon } from './client/daemon';
export { encodeFrame, encodeAck } from './protocol/frames';
export { EgressService } from './egress/service';
export { RedactionSet } from './secrets/redaction';
export { Redactor } from './secrets/redact';
