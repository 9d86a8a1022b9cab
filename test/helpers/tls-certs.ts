/**
 * Throwaway certificates for TLS tests, made with openssl in a temporary directory: CAs, and
 * certificates they sign for localhost / 127.0.0.1 (servers and clients alike).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CertDir {
  dir: string;
  /** Path of a file in the directory: `ca.crt`, `server.key`, … */
  file(name: string): string;
  /** A self-signed CA: NAME.crt and NAME.key. */
  ca(name: string): void;
  /** A certificate signed by CA for localhost and 127.0.0.1: NAME.crt, NAME.key (PKCS#8, unencrypted). */
  cert(ca: string, name: string): void;
  remove(): void;
}

export function certDir(): CertDir {
  const dir = mkdtempSync(join(tmpdir(), 'replistream-certs-'));
  const openssl = (...args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  return {
    dir,
    file: (name) => join(dir, name),
    ca(name) {
      openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`);
    },
    cert(ca, name) {
      openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      writeFileSync(join(dir, `${name}.ext`), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
      openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
