/**
 * The host system as a sandbox sees it: /usr read-only, the merged-/usr links, and
 * a curated /etc. The host's /etc is not mounted whole: it holds files a process
 * mapped to the caller's uid could read (for a root caller: /etc/shadow, ssh host
 * keys, /etc/ssl/private) and tool configs that carry tokens (/etc/npmrc, pip.conf).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Directories of programs and libraries, read-only. */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

/** /etc entries that programs need and that hold no secrets. */
const ETC_ALLOW = [
  'alternatives', 'bash.bashrc', 'bash_completion', 'bash_completion.d', 'ca-certificates', 'ca-certificates.conf',
  'debian_version', 'environment.d', 'fonts', 'gai.conf', 'gitconfig', 'host.conf', 'inputrc', 'issue',
  'ld.so.cache', 'ld.so.conf', 'ld.so.conf.d', 'locale.alias', 'locale.conf', 'localtime', 'lsb-release', 'magic',
  'mailcap', 'mime.types', 'nanorc', 'nsswitch.conf', 'os-release', 'perl', 'profile', 'profile.d', 'protocols',
  'python3', 'python3.11', 'rpc', 'services', 'shells', 'ssl/certs', 'ssl/openssl.cnf', 'terminfo', 'timezone',
  'vim', 'vimrc', 'wgetrc', 'xdg', 'java-17-openjdk', 'mercurial', 'subversion', 'emacs', 'manpath.config',
];

export type Mount =
  | { kind: 'ro-bind' | 'bind'; src: string; dest: string }
  | { kind: 'symlink'; target: string; dest: string };

/** /usr and friends, mirroring whether the host links /bin to usr/bin. */
export function systemMounts(): Mount[] {
  const out: Mount[] = [];
  for (const dir of SYSTEM_DIRS) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(dir);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) out.push({ kind: 'symlink', target: fs.readlinkSync(dir), dest: dir });
    else if (st.isDirectory()) out.push({ kind: 'ro-bind', src: dir, dest: dir });
  }
  return out;
}

function worldReadable(st: fs.Stats): boolean {
  return st.isDirectory() ? (st.mode & 0o005) === 0o005 : (st.mode & 0o004) !== 0;
}

/** Read-only binds of the allowlisted, world-readable parts of /etc. */
export function etcMounts(etc = '/etc'): Mount[] {
  const out: Mount[] = [];
  for (const rel of ETC_ALLOW) {
    const abs = path.join(etc, rel);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) {
      out.push({ kind: 'symlink', target: fs.readlinkSync(abs), dest: path.join('/etc', rel) });
    } else if (worldReadable(st)) {
      out.push({ kind: 'ro-bind', src: abs, dest: path.join('/etc', rel) });
    }
  }
  return out;
}

export interface Identity {
  uid: number;
  gid: number;
  user: string;
  home: string;
}

/** The sandbox's user: the caller's uid when it is not root, else 1000. Never root inside. */
export function sandboxIdentity(): Identity {
  const uid = process.getuid?.() ?? 1000;
  const gid = process.getgid?.() ?? 1000;
  return { uid: uid === 0 ? 1000 : uid, gid: gid === 0 ? 1000 : gid, user: 'airlock', home: '/home/airlock' };
}

/** Generated /etc files: who the sandbox user is, and a hostname that is not the host's. */
export function generatedEtc(id: Identity): Record<string, string> {
  return {
    passwd: `root:x:0:0:root:/root:/usr/sbin/nologin\n${id.user}:x:${id.uid}:${id.gid}:Airlock sandbox:${id.home}:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
    group: `root:x:0:\n${id.user}:x:${id.gid}:\nnogroup:x:65534:\n`,
    hostname: 'airlock\n',
    hosts: '127.0.0.1\tlocalhost airlock\n::1\tlocalhost ip6-localhost ip6-loopback\n',
  };
}
