/**
 * Host-side servers for the egress tests: real HTTP and TCP servers on loopback that
 * record every request and connection they receive, so a test can assert that a
 * denied attempt never reached them.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AuditRecord } from '../../runtime/audit';
import { readAuditFile } from '../../runtime/audit';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface HostHttpServer {
  port: number;
  /** Every request received, in order. */
  requests: SeenRequest[];
  /** TCP connections accepted (a denied attempt must leave this at its old value). */
  connections: number;
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1 answering `hello from the host` (or HANDLER's answer). */
export async function hostHttpServer(handler?: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void, host = '127.0.0.1'): Promise<HostHttpServer> {
  const requests: SeenRequest[] = [];
  const state = { connections: 0 };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (handler) handler(req, res, body);
      else res.end('hello from the host\n');
    });
  });
  server.on('connection', () => state.connections++);
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    get connections() {
      return state.connections;
    },
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

/** A static file server for DIR (a dumb-HTTP git remote, a registry's tarballs). */
export function serveDir(dir: string): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = `${dir}${rel}`;
    if (rel.includes('..') || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.statusCode = 404;
      res.end('not found');
      return;
    }
    res.end(fs.readFileSync(file));
  };
}

/** The egress records of an audit file, by type. */
export function netRecords(auditFile: string, type = 'net.connect'): AuditRecord[] {
  return readAuditFile(auditFile).records.filter((r) => r.type === type);
}
