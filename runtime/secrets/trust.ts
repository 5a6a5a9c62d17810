/**
 * What the proxy trusts when it verifies the destination of an intercepted tunnel:
 * Node's roots, the system's bundle (where distributions and companies add theirs),
 * and the CA files a person named (`airlock serve --trust-ca FILE`: private services,
 * tests). Tunnels that are not intercepted are verified by the client inside, as ever.
 */
import * as fs from 'node:fs';
import * as tls from 'node:tls';

/** The system CA bundles tried in order; tls.rootCertificates (Node's own) if none is readable. */
export const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt'];

export function upstreamTrust(extraFiles: string[] = []): string[] {
  const pems = [...tls.rootCertificates];
  const system = SYSTEM_BUNDLES.find((f) => fs.existsSync(f));
  if (system) pems.push(fs.readFileSync(system, 'utf8'));
  for (const f of extraFiles) {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch (e) {
      throw new Error(`cannot read the CA file ${f} (--trust-ca): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`the CA file ${f} (--trust-ca) holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    pems.push(text);
  }
  return pems;
}
