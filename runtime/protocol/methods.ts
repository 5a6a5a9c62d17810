/**
 * The wire protocol's methods: one table, imported by the daemon, the CLI, the MCP
 * server and the extension. Each entry documents its precondition and carries the
 * JSON schema its params are validated against before anything runs.
 * docs/protocol.md lists the same methods; test/unit/protocol-doc.test.ts fails when
 * they differ.
 */
import type { AuditRecord } from '../audit';
import type { LimitReport } from '../drivers/driver';
import type { PolicyDocument } from '../policy/policy';
import policySchema from '../policy/airlock.schema.json';

const id = { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' };
const dim = { type: 'integer', minimum: 1, maximum: 65535 };
const strArray = (max: number) => ({ type: 'array', maxItems: max, items: { type: 'string', maxLength: 131072 } });
const envMap = { type: 'object', maxProperties: 1024, propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }, additionalProperties: { type: 'string', maxLength: 131072 } };
const obj = (properties: Record<string, unknown>, required: string[] = []) => ({ type: 'object', additionalProperties: false, properties, required });

export interface MethodSpec {
  /** What it does and what must hold before calling it. */
  doc: string;
  params: Record<string, unknown>;
}

export const METHODS = {
  'runtime.info': {
    doc: 'The runtime\'s version, protocol version, drivers and the limits they enforce here. Always allowed.',
    params: obj({}),
  },
  'session.create': {
    doc: 'Starts a sandbox session rooted at `workspace` (an absolute directory) under the default policy, the workspace\'s `.vscode/airlock.json`, then `policy`. With `endOnDisconnect` the session ends when this connection closes (`airlock run`); otherwise it outlives its clients. `env` offers the caller\'s variables: only TERM, LANG, LC_*, TZ, COLORTERM, LANGUAGE and the names the policy\'s env.pass lists are used; send no others. Errors: PolicyInvalid, WorkspaceInvalid, SandboxUnavailable, AuditUnavailable.',
    params: obj({ workspace: { type: 'string', minLength: 1, maxLength: 4096, pattern: '^/' }, policy: { type: 'object' }, label: { type: 'string', maxLength: 200 }, env: envMap, endOnDisconnect: { type: 'boolean' } }, ['workspace']),
  },
  'session.list': {
    doc: 'Live sessions, newest first.',
    params: obj({}),
  },
  'session.get': {
    doc: 'One session with its processes. Precondition: the session exists (live, or ended recently: then the error says when and why it ended).',
    params: obj({ sessionId: id }, ['sessionId']),
  },
  'session.kill': {
    doc: 'Ends a live session: every process in it dies. Precondition: the session is live.',
    params: obj({ sessionId: id, reason: { type: 'string', maxLength: 500 } }, ['sessionId']),
  },
  'process.start': {
    doc: 'Starts a process in a live session: `argv`, or with `shell: true` and no argv the interactive shell (bash with shell integration). Output is kept in a bounded replay buffer; use process.attach to receive it. With `endsSession` the session ends (reason `exit`) when this process exits, before its `process.exit` notification is sent. Precondition: the session is live.',
    params: obj(
      { sessionId: id, argv: { ...strArray(4096), minItems: 1 }, shell: { type: 'boolean' }, pty: { type: 'boolean' }, cols: dim, rows: dim, cwd: { type: 'string', maxLength: 4096 }, env: envMap, endsSession: { type: 'boolean' } },
      ['sessionId'],
    ),
  },
  'process.attach': {
    doc: 'Subscribes this connection to a process\'s output: the result names a binary channel; the replay of recent output follows as binary frames, then live output. Precondition: the process exists (it may have exited: then only the replay and its exit follow).',
    params: obj({ processId: id }, ['processId']),
  },
  'process.detach': {
    doc: 'Stops sending this process\'s output to this connection. The process keeps running.',
    params: obj({ processId: id }, ['processId']),
  },
  'process.input': {
    doc: 'Writes UTF-8 text to the process\'s stdin or terminal (binary input: an input frame on the attach channel). Precondition: the process runs.',
    params: obj({ processId: id, data: { type: 'string', maxLength: 1048576 }, eof: { type: 'boolean' } }, ['processId']),
  },
  'process.resize': {
    doc: 'Sets the terminal size of a PTY process. Precondition: the process runs in a PTY.',
    params: obj({ processId: id, cols: dim, rows: dim }, ['processId', 'cols', 'rows']),
  },
  'process.signal': {
    doc: 'Sends a signal (e.g. "SIGINT") to the process\'s process group. Precondition: the process runs.',
    params: obj({ processId: id, signal: { type: 'string', pattern: '^SIG[A-Z0-9]+$' } }, ['processId', 'signal']),
  },
  exec: {
    doc: 'Runs argv in a live session with pipes and returns its exit and output, redacted. Each stream is capped at maxOutputBytes (default 65 536): its first and last halves are kept with a note of how many bytes were left out in between (`omittedBytes`), and the whole stream is saved inside the sandbox (`fullOutput`: /tmp/airlock-output/exec-N.stdout); `truncated` says whether bytes were left out. timeoutMs (default 60 000) kills it. Precondition: the session is live.',
    params: obj(
      {
        sessionId: id, argv: { ...strArray(4096), minItems: 1 }, cwd: { type: 'string', maxLength: 4096 }, env: envMap,
        stdin: { type: 'string', maxLength: 8388608 }, timeoutMs: { type: 'integer', minimum: 1, maximum: 86400000 },
        maxOutputBytes: { type: 'integer', minimum: 0, maximum: 67108864 },
      },
      ['sessionId', 'argv'],
    ),
  },
  'network.allow': {
    doc: 'A person\'s time-boxed exception: lets a live session reach `rule` (`example.com`, `*.example.com:443`, `10.0.0.0/8`, `127.0.0.1:8080`) for `ttlSeconds`, after which the rule expires by itself (`net.rule-expired`). Audited as `net.rule-added` with `by`. The sandbox cannot call this: the control socket is not visible inside. Precondition: the session is live and has egress (network.mode `proxy`). Errors: InvalidParams (a malformed rule: the message says why and shows examples), SessionNotFound, SessionEnded.',
    params: obj({ sessionId: id, rule: { type: 'string', minLength: 1, maxLength: 300 }, ttlSeconds: { type: 'integer', minimum: 1, maximum: 604800 }, by: { type: 'string', maxLength: 200 } }, ['sessionId', 'rule', 'ttlSeconds']),
  },
  'network.rules': {
    doc: 'The live egress rules of a session (policy, registries, grants with their expiry), whether it allows all public hosts, and its open connection count. Precondition: the session is live.',
    params: obj({ sessionId: id }, ['sessionId']),
  },
  'secret.grant': {
    doc: 'A person\'s grant of one secret to a live session for `ttlSeconds` (default 3600; never beyond the session\'s lifetime). `mode` `env`: a variable in processes started after the grant (running ones keep what they had). `file`: `/run/airlock/secrets/NAME` (0400) on a tmpfs inside the sandbox. `brokered`: processes see a placeholder, and the egress proxy swaps in the value in request headers (basic auth included) only on requests to `hosts`, intercepting TLS for those hosts alone; the placeholder sent anywhere else is refused and audited (`secret.blocked`). The value lives only in runtime memory and is redacted (with its base64, hex and URL-encoded forms) from everything leaving the runtime; records and results carry the name, never the value. A grant of a name that is live replaces it. Audited as `secret.grant`; ends with `secret.revoke` or `secret.expire`. Precondition: the session is live. Errors: InvalidParams (name, value size of 8 to 65536 bytes, hosts), SessionNotFound, SessionEnded.',
    params: obj(
      {
        sessionId: id, name: { type: 'string', minLength: 1, maxLength: 128 }, value: { type: 'string', minLength: 1, maxLength: 65536 },
        mode: { type: 'string', enum: ['env', 'file', 'brokered'] }, hosts: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 300 } },
        ttlSeconds: { type: 'integer', minimum: 1, maximum: 604800 }, by: { type: 'string', maxLength: 200 },
      },
      ['sessionId', 'name', 'value', 'mode'],
    ),
  },
  'secret.revoke': {
    doc: 'Ends a live lease at once: the file is removed, the placeholder is no longer swapped, new processes do not get the variable. Its value stays redacted until the session ends (a running process may still hold it). Precondition: the session is live and has a live secret of that name.',
    params: obj({ sessionId: id, name: { type: 'string', minLength: 1, maxLength: 128 }, by: { type: 'string', maxLength: 200 } }, ['sessionId', 'name']),
  },
  'secret.list': {
    doc: 'The live leases of a session: name, mode, hosts, expiry, who granted it and how often a brokered one was used. Never values. Precondition: the session is live.',
    params: obj({ sessionId: id }, ['sessionId']),
  },
  'access.request': {
    doc: 'An agent asks a person for more access; nothing is granted until a person decides. `kind` `host`: that the session may reach `target`, a rule in network.allow\'s syntax; `secret`: that it be granted the secret named `target`. `reason` says why (shown to the person as untrusted text); `ttlSeconds` is how long it asks for (default 900; the person may approve another). The request is pending until a person approves or denies it (access.decide) or 15 minutes pass (then `expired`). With `waitMs` (default 0) the call waits that long for a decision and returns the request as it is then; `message` is a sentence for the agent. A pending request of the same kind and target is returned instead of a new one. Audited as `access.request`. Precondition: the session is live (for `host`: with egress, network.mode `proxy`). Errors: InvalidParams (a malformed target: the message names it), LimitExceeded (32 pending requests in the session), SessionNotFound, SessionEnded.',
    params: obj(
      {
        sessionId: id, kind: { type: 'string', enum: ['host', 'secret'] }, target: { type: 'string', minLength: 1, maxLength: 300 },
        reason: { type: 'string', minLength: 1, maxLength: 500 }, ttlSeconds: { type: 'integer', minimum: 1, maximum: 86400 },
        waitMs: { type: 'integer', minimum: 0, maximum: 300000 },
      },
      ['sessionId', 'kind', 'target', 'reason'],
    ),
  },
  'access.list': {
    doc: 'Access requests, pending ones first, newest first; optionally of one session and in one state. Decided and expired requests are remembered for a while (the newest 1000), those of ended sessions too. Precondition: a session named is live, or has requests remembered.',
    params: obj({ sessionId: id, state: { type: 'string', enum: ['pending', 'approved', 'denied', 'expired'] } }),
  },
  'access.decide': {
    doc: 'A person\'s decision on a pending access request. Only a person\'s client calls this (the CLI\'s `airlock approve` and `airlock deny`, the VS Code panel): the MCP server offers agents no tool for it, and nothing in access.request approves by itself. Approving a `host` request allows its target through network.allow for `ttlSeconds` (default: what was asked); approving a `secret` request needs `secret`, the value from the person\'s client (never from the requester), granted through secret.grant. Denying records the decision and `note`. Audited as `access.decide` (the value never). Precondition: the request is pending. Errors: InvalidParams (an unknown request; one already approved, denied or expired: the message names its state; a secret request approved without a value), SessionNotFound, SessionEnded.',
    params: obj(
      {
        requestId: id, approve: { type: 'boolean' }, ttlSeconds: { type: 'integer', minimum: 1, maximum: 604800 }, by: { type: 'string', maxLength: 200 },
        note: { type: 'string', maxLength: 500 },
        secret: obj(
          {
            value: { type: 'string', minLength: 1, maxLength: 65536 }, mode: { type: 'string', enum: ['env', 'file', 'brokered'] },
            hosts: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 300 } },
          },
          ['value', 'mode'],
        ),
      },
      ['requestId', 'approve'],
    ),
  },
  'events.subscribe': {
    doc: 'Sends `event` notifications to this connection for event types matching any filter pattern (`session.*`, `process.exit`, `*`); default all.',
    params: obj({ filter: { type: 'array', maxItems: 64, items: { type: 'string', pattern: '^[a-z*]+(\\.[a-z*-]+)?$' } } }),
  },
  'events.unsubscribe': {
    doc: 'Stops `event` notifications to this connection.',
    params: obj({}),
  },
  'audit.query': {
    doc: 'Audit records, oldest first, optionally of one session and some types, at most `limit` (default 1000) of the newest.',
    params: obj({ sessionId: id, types: { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 100 } }, limit: { type: 'integer', minimum: 1, maximum: 100000 } }),
  },
  'audit.export': {
    doc: 'One session\'s audit records exactly as stored (each line keeps its own hash, so a reviewer can check every record), in pages: call again with `afterSeq` set to the result\'s `lastSeq` until `done`. Works for ended sessions. Errors: SessionNotFound when the log holds no record of the session.',
    params: obj({ sessionId: id, afterSeq: { type: 'integer', minimum: 0 } }, ['sessionId']),
  },
  'audit.verify': {
    doc: 'Checks the whole audit log\'s hash chain and head file, as `airlock audit verify` does, and says where it first breaks.',
    params: obj({}),
  },
} satisfies Record<string, MethodSpec>;

export type MethodName = keyof typeof METHODS;

/** Notifications the daemon sends. */
export const NOTIFICATIONS = {
  event: 'A runtime event (see EventType) for a connection that called events.subscribe.',
  'process.exit': 'An attached process exited: {processId, code, signal, reason?, warnings?} (warnings: what a person should know after a session it ended, e.g. new git repositories).',
} as const;

export type EventType =
  | 'session.start' | 'session.end' | 'process.start' | 'process.exit' | 'process.error'
  | 'command.start' | 'command.end' | 'workspace.git-created'
  | 'net.connect' | 'net.close' | 'net.rule-added' | 'net.rule-expired' | 'net.allow-all' | 'net.registries'
  | 'secret.grant' | 'secret.revoke' | 'secret.expire' | 'secret.use' | 'secret.blocked'
  | 'access.request' | 'access.decide' | 'access.expire';

export interface RuntimeEvent {
  type: EventType;
  ts: string;
  sessionId: string;
  [field: string]: unknown;
}

export interface SessionInfo {
  sessionId: string;
  label?: string;
  workspace: string;
  driver: string;
  state: 'running' | 'ended';
  startedAt: string;
  endedAt?: string;
  endReason?: string;
  /** Seconds until the lifetime limit ends the session. */
  lifetimeLeft: number;
  processes: ProcessInfo[];
  limits: LimitReport[];
  /** Host paths of the empty placeholders that keep absent read-only paths (`.vscode`, `.envrc`, …) from being created inside; removed when the last session relying on them ends. */
  placeholders: string[];
}

export interface ProcessInfo {
  processId: string;
  argv: string[];
  pty: boolean;
  pid: number;
  running: boolean;
  exitCode: number | null;
  signal: string | null;
  startedAt: string;
  /** Connections receiving its output now. */
  attached: number;
}

export interface NetworkRule {
  rule: string;
  effect: 'allow' | 'deny';
  source: 'policy' | 'cli' | 'registry' | 'grant';
  /** ISO time at which a grant expires. */
  expiresAt?: string;
}

export interface ExecResult {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  truncated: boolean;
  /** Bytes of each stream left out of the result (between its kept head and tail). */
  omittedBytes: { stdout: number; stderr: number };
  /** Where a truncated stream was saved in full, inside the sandbox. */
  fullOutput?: { stdout?: string; stderr?: string };
  timedOut: boolean;
  durationMs: number;
}

/** Params and results, for typed clients. */
export interface Api {
  'runtime.info': [Record<string, never>, { version: string; protocol: number; pid: number; drivers: { name: string; available: boolean }[]; limits: LimitReport[] }];
  'session.create': [{ workspace: string; policy?: PolicyDocument; label?: string; env?: Record<string, string>; endOnDisconnect?: boolean }, { sessionId: string }];
  'session.list': [Record<string, never>, { sessions: SessionInfo[] }];
  'session.get': [{ sessionId: string }, SessionInfo];
  'session.kill': [{ sessionId: string; reason?: string }, { warnings: string[] }];
  'process.start': [{ sessionId: string; argv?: string[]; shell?: boolean; pty?: boolean; cols?: number; rows?: number; cwd?: string; env?: Record<string, string>; endsSession?: boolean }, { processId: string }];
  'process.attach': [{ processId: string }, { channel: number; replayBytes: number; running: boolean }];
  'process.detach': [{ processId: string }, Record<string, never>];
  'process.input': [{ processId: string; data?: string; eof?: boolean }, Record<string, never>];
  'process.resize': [{ processId: string; cols: number; rows: number }, Record<string, never>];
  'process.signal': [{ processId: string; signal: string }, Record<string, never>];
  exec: [{ sessionId: string; argv: string[]; cwd?: string; env?: Record<string, string>; stdin?: string; timeoutMs?: number; maxOutputBytes?: number }, ExecResult];
  'network.allow': [{ sessionId: string; rule: string; ttlSeconds: number; by?: string }, NetworkRule];
  'network.rules': [{ sessionId: string }, { mode: 'proxy' | 'none'; allowAll: boolean; rules: NetworkRule[]; activeConnections: number }];
  'secret.grant': [{ sessionId: string; name: string; value: string; mode: SecretMode; hosts?: string[]; ttlSeconds?: number; by?: string }, SecretInfo];
  'secret.revoke': [{ sessionId: string; name: string; by?: string }, SecretInfo];
  'secret.list': [{ sessionId: string }, { secrets: SecretInfo[] }];
  'access.request': [{ sessionId: string; kind: AccessKind; target: string; reason: string; ttlSeconds?: number; waitMs?: number }, AccessRequest];
  'access.list': [{ sessionId?: string; state?: AccessState }, { requests: AccessRequest[] }];
  'access.decide': [{ requestId: string; approve: boolean; ttlSeconds?: number; by?: string; note?: string; secret?: { value: string; mode: SecretMode; hosts?: string[] } }, AccessRequest];
  'events.subscribe': [{ filter?: string[] }, Record<string, never>];
  'events.unsubscribe': [Record<string, never>, Record<string, never>];
  'audit.query': [{ sessionId?: string; types?: string[]; limit?: number }, { records: AuditRecord[] }];
  'audit.export': [{ sessionId: string; afterSeq?: number }, { jsonl: string; records: number; lastSeq: number; done: boolean }];
  'audit.verify': [Record<string, never>, AuditVerifyResult];
}

/** audit.verify's answer. */
export interface AuditVerifyResult {
  ok: boolean;
  /** The log's path on the runtime's machine. */
  file: string;
  /** Records verified in chain order (all when ok; those before the break otherwise). */
  records: number;
  /** Where the chain first breaks: 1-based line, the record's seq when readable, and why. */
  firstBad?: { line: number; seq?: number; reason: string };
  /** Lines left torn by a killed writer (each one recorded by an audit.torn record). */
  torn: number;
}

export type SecretMode = 'env' | 'file' | 'brokered';

/** What secret.list and events show of a lease: never the value. */
export interface SecretInfo {
  name: string;
  mode: SecretMode;
  /** Brokered: where the value may be sent. */
  hosts?: string[];
  grantedAt: string;
  expiresAt: string;
  /** Who granted it (the client's own description). */
  by: string;
  /** Brokered: substitutions made so far. */
  uses: number;
  /** File mode: the path inside the sandbox. */
  path?: string;
}

export type AccessKind = 'host' | 'secret';
export type AccessState = 'pending' | 'approved' | 'denied' | 'expired';

/** An agent's request for more access and what became of it (access.*). Never a secret value. */
export interface AccessRequest {
  /** 16 hex digits. */
  requestId: string;
  sessionId: string;
  kind: AccessKind;
  /** host: the rule (canonical text); secret: the secret's name. */
  target: string;
  /** The requester's words: untrusted text. */
  reason: string;
  requestedTtlSeconds: number;
  state: AccessState;
  createdAt: string;
  /** When it stopped being pending (decided, or expired). */
  decidedAt?: string;
  /** Who decided (the client's own description). */
  decidedBy?: string;
  /** The person's words with the decision. */
  note?: string;
  /** Approved: the granted time. */
  ttlSeconds?: number;
  /** Approved: when the grant ends. */
  expiresAt?: string;
  /** A sentence for the agent: what happened and what it can do now. */
  message: string;
}

/** The policy schema, for clients that validate before sending. */
export { policySchema };
