/**
 * airlock-agent kills every process it may signal when its channel closes. That is
 * right only as PID 1 of a sandbox's own PID namespace, so it must refuse to run
 * anywhere else. The check runs it as PID 2 of a throwaway PID namespace, so a
 * broken guard could only harm that namespace.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findBwrap } from '../../runtime/drivers/bwrap/driver';

const AGENT = path.resolve(__dirname, '..', '..', '..', 'dist', 'airlock-agent');

test('airlock-agent refuses to run unless it is PID 1 of its PID namespace', () => {
  const bwrap = findBwrap();
  assert.ok(bwrap, 'bubblewrap is required for this test');
  const r = spawnSync(bwrap, ['--unshare-user', '--unshare-pid', '--die-with-parent', '--ro-bind', '/', '/', '--', AGENT], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe', 'ignore'],
    timeout: 10_000,
  });
  assert.equal(r.status, 64);
  assert.match(r.stderr, /refusing to run: it must be PID 1 of a sandbox's PID namespace/);
});
