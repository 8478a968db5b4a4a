/**
 * Local errors (src/local/errors.ts): every local Error class carries a string `code` from the
 * one registry, no two classes share a code, and no registered code is left without a user.
 * Wire errors (numeric JSON-RPC codes) are apart: no local code is a number.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { LOCAL_ERRORS, isLocalErrorCode, type LocalErrorCode } from '../src/local/errors.js';
import { HomeError } from '../src/local/home.js';
import { AlreadyRunningError } from '../src/local/pidfile.js';
import { ConfigError } from '../src/daemon/files/config.js';
import { UpstreamConfigError } from '../src/hosting/upstream-config.js';
import { findJsonSyntaxError } from '../src/hosting/json-syntax.js';
import { SpawnError } from '../src/hosting/child-transport.js';
import { ListError, UnavailableError } from '../src/mux/lists.js';
import { AbortedError } from '../src/builtin/providers/limiter.js';
import { PROVIDER_ERROR_CODES, ProviderError, type ProviderErrorKind } from '../src/builtin/providers/provider-error.js';
import { Upstream } from '../src/hosting/upstream.js';
import { LoginNeededError } from '../src/hosting/oauth/session.js';
import { UnknownServerError } from '../src/hosting/oauth/logins.js';
import { ROOT } from './helpers.js';

const upstream = new Upstream({ name: 'srv', prefix: 'srv', idleTimeoutMs: 0, launch: () => Promise.reject(new Error('never')) });

/** One instance of each exported local error class, as the code raises it. */
const instances: Record<string, Error & { code: string }> = {
  HomeError: new HomeError('/home/x', 'cannot use it'),
  AlreadyRunningError: new AlreadyRunningError({ pid: 1, host: '127.0.0.1', port: 1, started_at: 'now' } as never),
  ConfigError: new ConfigError('invalid configuration: x'),
  UpstreamConfigError: new UpstreamConfigError('cannot read the config file'),
  SpawnError: SpawnError.from(Object.assign(new Error('spawn x ENOENT'), { code: 'ENOENT' })),
  ListError: new ListError({ code: -32603, message: 'boom' }),
  UnavailableError: new UnavailableError(upstream, 'could not start'),
  AbortedError: new AbortedError('cancelled while waiting for a provider slot'),
  LoginNeededError: new LoginNeededError('remote', 'no login yet'),
  UnknownServerError: new UnknownServerError('remote'),
};

/** Codes the internal classes (not exported) carry: RateLimited (provider.ts), Broken (json-syntax.ts). */
const INTERNAL: Record<string, LocalErrorCode> = { RateLimited: 'EPROVIDER_RETRY', Broken: 'EJSON_SYNTAX' };

test('every exported local error class has a code from the registry, and keeps its message', () => {
  for (const [name, error] of Object.entries(instances)) {
    assert.ok(isLocalErrorCode(error.code), `${name}.code ${error.code} is registered`);
    assert.ok(error instanceof Error);
  }
  assert.equal(instances.HomeError?.message, 'cannot use it', 'messages are as given');
  assert.equal(instances.UnavailableError?.message, 'srv: could not start');
  assert.equal(instances.ListError?.message, 'boom');
  assert.equal(instances.LoginNeededError?.message, 'remote needs a login (no login yet): run `exai-ws login remote`');
});

test('a SpawnError keeps the system code apart from its local code', () => {
  const error = SpawnError.from(Object.assign(new Error('spawn x EMFILE'), { code: 'EMFILE' }));
  assert.equal(error.code, 'ESPAWN');
  assert.equal(error.systemCode, 'EMFILE');
  assert.equal(error.message, 'spawn x EMFILE (the daemon has too many files open)');
  assert.equal(SpawnError.from('odd').systemCode, 'EUNKNOWN');
});

test('each provider error kind has its own registered code; the kind stays for the provider state', () => {
  const kinds = Object.keys(PROVIDER_ERROR_CODES) as ProviderErrorKind[];
  assert.equal(kinds.length, 8);
  for (const kind of kinds) {
    const error = new ProviderError(kind, 'x');
    assert.equal(error.kind, kind);
    assert.ok(isLocalErrorCode(error.code), error.code);
    assert.ok(error.code.startsWith('EPROVIDER_'), error.code);
  }
  assert.equal(new Set(Object.values(PROVIDER_ERROR_CODES)).size, kinds.length, 'no two kinds share a code');
});

test('codes are unique across classes, and every registered code is used', () => {
  const used: string[] = [
    ...Object.values(instances).map((e) => e.code),
    ...Object.values(PROVIDER_ERROR_CODES),
    ...Object.values(INTERNAL),
  ];
  assert.equal(new Set(used).size, used.length, `a code is shared: ${used.join(', ')}`);
  assert.deepEqual([...used].sort(), Object.keys(LOCAL_ERRORS).sort(), 'the registry lists exactly the codes in use');
  for (const [code, meaning] of Object.entries(LOCAL_ERRORS)) {
    assert.match(code, /^E[A-Z0-9_]+$/, 'a code is a string like EHOME');
    assert.ok(meaning.length > 10 && !meaning.includes('\n'), `${code} has a one-line meaning`);
  }
  assert.equal(isLocalErrorCode(-32000), false, 'wire codes are numbers, never local codes');
  assert.equal(isLocalErrorCode('toString'), false);
});

test('the internal json-syntax error still turns into a problem report', () => {
  assert.deepEqual(findJsonSyntaxError('[1,]'), {
    offset: 2,
    line: 1,
    column: 3,
    reason: "a trailing comma: JSON allows no comma before ']'",
  });
});

test('every `extends Error` class in src declares a registered code (none is forgotten)', () => {
  const found = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) {
        const text = readFileSync(path, 'utf8');
        for (const match of text.matchAll(/class (\w+) extends Error \{([\s\S]*?)\n\}/g)) {
          const code = /readonly code(?:: [^=;]+)?(?: = '(E[A-Z0-9_]+)')?/.exec(match[2] ?? '');
          assert.ok(code, `${relative(ROOT, path)}: ${match[1]} has a readonly code`);
          found.set(match[1] ?? '', code[1] ?? '(computed)');
        }
      }
    }
  };
  walk(join(ROOT, 'src'));
  assert.deepEqual([...found.keys()].sort(), [...Object.keys(instances), 'ProviderError', ...Object.keys(INTERNAL)].sort());
  for (const [name, code] of Object.entries(INTERNAL)) assert.equal(found.get(name), code);
  for (const [name, error] of Object.entries(instances)) assert.equal(found.get(name), error.code, name);
});
