/**
 * Secrets on Windows (local/acl.ts, home.ts's secureHome), run on any platform: icacls output
 * as Windows 10/11 prints it (English and German systems, a profile folder, a folder under C:\,
 * a name outside ASCII through the OEM code page) parsed and judged; the commands that limit a
 * folder to the user, recorded; and every way icacls can fail (missing, an error, Wine's dummy
 * that prints nothing) ending as a warning line, never an exception.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  checkUserOnly,
  isUser,
  makePrivateDir,
  parseIcacls,
  restrictToUser,
  runCommand,
  secretWarnings,
  type CommandResult,
} from '../src/local/acl.js';
import { prepareHome, secureHome } from '../src/local/home.js';
import { homePaths } from '../src/local/files.js';
import { Cleanup, makeHome } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const ENV = { USERDOMAIN: 'DESKTOP-7QK2M1B', USERNAME: 'alice' };
const OK_LINE = 'Successfully processed 1 files; Failed processing 0 files';

/** The user's own profile folder, Windows 11 (every entry inherited from C:\Users\alice). */
const PROFILE = 'C:\\Users\\alice\\AppData\\Local\\exai-ws';
const PROFILE_OUT = [
  `${PROFILE} NT AUTHORITY\\SYSTEM:(I)(OI)(CI)(F)`,
  `${' '.repeat(PROFILE.length)} BUILTIN\\Administrators:(I)(OI)(CI)(F)`,
  `${' '.repeat(PROFILE.length)} DESKTOP-7QK2M1B\\alice:(I)(OI)(CI)(F)`,
  '',
  OK_LINE,
  '',
].join('\r\n');

/** A folder made under C:\ (a custom EXAI_WS_HOME), Windows 10: C:\'s entries for every user. */
const ROOTED = 'C:\\exai ws';
const ROOTED_OUT = [
  `${ROOTED} BUILTIN\\Administrators:(I)(OI)(CI)(F)`,
  `${' '.repeat(ROOTED.length)} NT AUTHORITY\\SYSTEM:(I)(OI)(CI)(F)`,
  `${' '.repeat(ROOTED.length)} BUILTIN\\Users:(I)(OI)(CI)(RX)`,
  `${' '.repeat(ROOTED.length)} NT AUTHORITY\\Authenticated Users:(I)(M)`,
  `${' '.repeat(ROOTED.length)} NT AUTHORITY\\Authenticated Users:(I)(OI)(CI)(IO)(M)`,
  '',
  OK_LINE,
  '',
].join('\r\n');

/** A German Windows 10, read through the OEM code page: "Ä" and "ü" arrive as U+FFFD. */
const GERMAN = 'C:\\Users\\j\uFFFDrgen\\AppData\\Local\\exai-ws';
const GERMAN_OUT = [
  `${GERMAN} NT-AUTORIT\uFFFDT\\SYSTEM:(I)(OI)(CI)(F)`,
  `${' '.repeat(GERMAN.length)} VORDEFINIERT\\Administratoren:(I)(OI)(CI)(F)`,
  `${' '.repeat(GERMAN.length)} PC-J\\j\uFFFDrgen:(I)(OI)(CI)(F)`,
  `${' '.repeat(GERMAN.length)} Jeder:(R)`,
  '',
  '1 Dateien erfolgreich verarbeitet, bei 0 Dateien ist ein Verarbeitungsfehler aufgetreten.',
].join('\r\n');

function icacls(answer: (args: readonly string[]) => Partial<CommandResult>) {
  const calls: string[][] = [];
  const runner = (command: string, args: readonly string[]): Promise<CommandResult> => {
    calls.push([command, ...args]);
    return Promise.resolve({ status: 0, stdout: '', stderr: '', ...answer(args) });
  };
  return { calls, runner };
}

test('icacls listings parse into principals and their flags, spaces in paths and names included', () => {
  assert.deepEqual(parseIcacls(PROFILE_OUT, PROFILE), [
    { principal: 'NT AUTHORITY\\SYSTEM', parts: ['I', 'OI', 'CI', 'F'] },
    { principal: 'BUILTIN\\Administrators', parts: ['I', 'OI', 'CI', 'F'] },
    { principal: 'DESKTOP-7QK2M1B\\alice', parts: ['I', 'OI', 'CI', 'F'] },
  ]);
  const rooted = parseIcacls(ROOTED_OUT, ROOTED);
  assert.deepEqual(
    rooted.map((e) => e.principal),
    [
      'BUILTIN\\Administrators',
      'NT AUTHORITY\\SYSTEM',
      'BUILTIN\\Users',
      'NT AUTHORITY\\Authenticated Users',
      'NT AUTHORITY\\Authenticated Users',
    ],
  );
  assert.deepEqual(rooted[4]?.parts, ['I', 'OI', 'CI', 'IO', 'M']);
  // The path as icacls printed it differs from the one asked (8.3 name): the column still tells.
  assert.equal(parseIcacls(ROOTED_OUT.replace(ROOTED, 'C:\\EXAIWS~1'), ROOTED)[0]?.principal, 'BUILTIN\\Administrators');
  // After `exai-ws` limited it: one line, one entry of the user's own.
  assert.deepEqual(parseIcacls(`${ROOTED} DESKTOP-7QK2M1B\\alice:(OI)(CI)(F)\r\n\r\n${OK_LINE}\r\n`, ROOTED), [
    { principal: 'DESKTOP-7QK2M1B\\alice', parts: ['OI', 'CI', 'F'] },
  ]);
  // Specific rights and a deny entry.
  assert.deepEqual(parseIcacls(`C:\\t Everyone:(DENY)(S,RD)\r\n    alice:(F)\r\n`, 'C:\\t')[0], {
    principal: 'Everyone',
    parts: ['DENY', 'S,RD'],
  });
  assert.deepEqual(parseIcacls('', ROOTED), [], "Wine's dummy icacls prints nothing");
});

test('a profile folder is private; C:\\ children are shared with Users; a German system names Jeder (Everyone)', async () => {
  const check = (out: string) => checkUserOnly('X', { platform: 'win32', env: ENV, runner: icacls(() => ({ stdout: out })).runner });
  assert.deepEqual(
    await check(PROFILE_OUT),
    { state: 'private' },
    'SYSTEM and Administrators are tolerated: they can take any file anyway',
  );
  assert.deepEqual(await check(ROOTED_OUT), { state: 'shared', others: ['BUILTIN\\Users', 'NT AUTHORITY\\Authenticated Users'] });
  const german = await checkUserOnly('X', {
    platform: 'win32',
    env: { USERDOMAIN: 'PC-J', USERNAME: 'jürgen' },
    runner: icacls(() => ({ stdout: GERMAN_OUT })).runner,
  });
  assert.deepEqual(
    german,
    { state: 'shared', others: ['Jeder'] },
    'the localized SYSTEM and Administratoren are known; the garbled ü is still the user',
  );
  assert.deepEqual(
    await check('C:\\t Everyone:(DENY)(F)\r\n    DESKTOP-7QK2M1B\\alice:(F)\r\n'),
    { state: 'private' },
    'a deny entry gives nothing',
  );
  assert.deepEqual(
    await check('C:\\t S-1-5-21-1-2-3-1001:(F)\r\n    DESKTOP-7QK2M1B\\alice:(F)\r\n'),
    { state: 'shared', others: ['S-1-5-21-1-2-3-1001'] },
    'an unresolved SID of another account',
  );
  assert.deepEqual(await check('C:\\t DESKTOP-7QK2M1B\\bob:(R)\r\n    DESKTOP-7QK2M1B\\alice:(F)\r\n'), {
    state: 'shared',
    others: ['DESKTOP-7QK2M1B\\bob'],
  });
});

test('the user is recognised across case, a missing domain and letters lost to the OEM code page', () => {
  assert.ok(isUser('DESKTOP-7QK2M1B\\alice', 'desktop-7qk2m1b\\ALICE'));
  assert.ok(isUser('alice', 'DESKTOP-7QK2M1B\\alice'));
  assert.ok(isUser('PC\\jürgen', 'PC\\j\uFFFDrgen'));
  assert.ok(isUser('PC\\jürgen', 'PC\\j\u0081rgen'), 'cp850 ü decoded as latin1');
  assert.ok(!isUser('DESKTOP-7QK2M1B\\alice', 'DESKTOP-7QK2M1B\\alicia'));
  assert.ok(!isUser('DESKTOP-7QK2M1B\\alice', 'OTHERPC\\alice'), 'a namesake on another machine or domain is someone else');
});

test('restrictToUser runs one icacls that drops inherited entries and grants the user alone, inherited by files; nothing off win32', async () => {
  const rec = icacls(() => ({ stdout: 'processed file: C:\\exai ws\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n' }));
  assert.equal(await restrictToUser(ROOTED, { platform: 'win32', env: ENV, runner: rec.runner }), null);
  assert.deepEqual(rec.calls, [['icacls', ROOTED, '/inheritance:r', '/grant:r', 'DESKTOP-7QK2M1B\\alice:(OI)(CI)F']]);
  const off = icacls(() => ({}));
  assert.equal(await restrictToUser(ROOTED, { platform: 'linux', env: ENV, runner: off.runner }), null);
  assert.equal(await restrictToUser(ROOTED, { platform: 'darwin', env: ENV, runner: off.runner }), null);
  assert.deepEqual(off.calls, []);

  const denied = icacls(() => ({
    status: 5,
    stdout: '',
    stderr: `${ROOTED}: Access is denied.\r\nSuccessfully processed 0 files; Failed processing 1 files\r\n`,
  }));
  assert.equal(
    await restrictToUser(ROOTED, { platform: 'win32', env: ENV, runner: denied.runner }),
    `could not limit ${ROOTED} to you (icacls exited with 5: ${ROOTED}: Access is denied.); run: icacls "${ROOTED}" /inheritance:r /grant:r "DESKTOP-7QK2M1B\\alice:(OI)(CI)F"`,
  );
  assert.match((await restrictToUser(ROOTED, { platform: 'win32', env: {}, runner: off.runner })) ?? '', /USERNAME is not set/);
});

test('every failure of icacls is a warning line naming the folder and the fix, never an exception', async () => {
  const places = [{ path: ROOTED, what: 'the home folder', folder: ROOTED }];
  const warn = (answer: Partial<CommandResult> | (() => never)) =>
    secretWarnings(places, {
      platform: 'win32',
      env: ENV,
      runner: typeof answer === 'function' ? () => answer() : icacls(() => answer).runner,
    });
  const fix = `icacls "${ROOTED}" /inheritance:r /grant:r "DESKTOP-7QK2M1B\\alice:(OI)(CI)F"`;
  assert.deepEqual(await warn({ stdout: ROOTED_OUT }), [
    `the home folder ${ROOTED} can be read by BUILTIN\\Users, NT AUTHORITY\\Authenticated Users, not only by you: fix with: ${fix} && icacls "${ROOTED}" /remove:g BUILTIN\\Users "NT AUTHORITY\\Authenticated Users"`,
  ]);
  assert.deepEqual(await warn({ stdout: PROFILE_OUT }), []);
  assert.deepEqual(await warn({ stdout: '' }), [
    `could not check who can read the home folder ${ROOTED} (icacls printed no access list); to limit it to you: ${fix}`,
  ]);
  assert.match(
    (await warn({ status: null, error: Object.assign(new Error('spawn icacls ENOENT'), { code: 'ENOENT' }) }))[0] ?? '',
    /\(icacls is not installed\)/,
  );
  assert.match(
    (await warn({ status: null, error: Object.assign(new Error('spawn icacls ETIMEDOUT'), { code: 'ETIMEDOUT' }) }))[0] ?? '',
    /\(icacls: spawn icacls ETIMEDOUT\)/,
  );
  assert.match(
    (await warn({ status: 2, stderr: 'C:\\exai ws: The system cannot find the file specified.\r\n' }))[0] ?? '',
    /icacls exited with 2: C:\\exai ws: The system cannot find the file specified\./,
  );
  assert.match(
    (
      await warn(() => {
        throw new Error('runner blew up');
      })
    )[0] ?? '',
    /could not check .* \(runner blew up\)/,
  );
  assert.deepEqual(await secretWarnings(places, { platform: 'linux', runner: () => assert.fail('no icacls off win32') }), []);
});

test('secureHome limits a home it made, then checks the home, the token, the settings folder and file; off win32 it asks nothing', async () => {
  const root = makeHome(cleanup);
  const paths = homePaths(join(root, 'state'));
  const { created } = prepareHome(paths);
  assert.equal(created, true, 'prepareHome says it made the home');
  assert.equal(prepareHome(paths).created, false, 'and not when it was there');
  writeFileSync(paths.token, 'x\n');
  const settingsDir = join(root, 'config');
  mkdirSync(settingsDir);
  writeFileSync(join(settingsDir, 'daemon.env'), 'A=1\n');
  const rec = icacls((args) =>
    args.length === 1 ? { stdout: `${args[0]} DESKTOP-7QK2M1B\\alice:(OI)(CI)(F)\r\n\r\n${OK_LINE}\r\n` } : {},
  );
  const lines = await secureHome(paths, join(settingsDir, 'daemon.env'), true, { platform: 'win32', env: ENV, runner: rec.runner });
  assert.deepEqual(lines, []);
  assert.deepEqual(rec.calls, [
    ['icacls', paths.home, '/inheritance:r', '/grant:r', 'DESKTOP-7QK2M1B\\alice:(OI)(CI)F'],
    ['icacls', paths.home],
    ['icacls', paths.token],
    ['icacls', settingsDir],
    ['icacls', join(settingsDir, 'daemon.env')],
  ]);

  // Wine: icacls changes nothing and prints nothing. Lines, no exception, no wait beyond the calls.
  const wine = icacls(() => ({ stdout: '' }));
  const wineLines = await secureHome(paths, join(root, 'none', 'daemon.env'), false, { platform: 'win32', env: ENV, runner: wine.runner });
  assert.equal(wineLines.length, 1, wineLines.join('\n'));
  assert.equal(
    wineLines[0],
    `could not check who can read the home folder ${paths.home}, the token file ${paths.token} (icacls printed no access list); to limit it to you: icacls ${paths.home} /inheritance:r /grant:r "DESKTOP-7QK2M1B\\alice:(OI)(CI)F"`,
  );

  const off = icacls(() => ({}));
  assert.deepEqual(await secureHome(paths, join(settingsDir, 'daemon.env'), true, { platform: 'linux', runner: off.runner }), []);
  assert.deepEqual(off.calls, []);
});

test('makePrivateDir limits only a folder it made', async () => {
  const root = makeHome(cleanup);
  const rec = icacls(() => ({}));
  const dir = join(root, 'a', 'exai-ws');
  assert.equal(await makePrivateDir(dir, { platform: 'win32', env: ENV, runner: rec.runner }), null);
  assert.equal(await makePrivateDir(dir, { platform: 'win32', env: ENV, runner: rec.runner }), null);
  assert.deepEqual(rec.calls, [['icacls', dir, '/inheritance:r', '/grant:r', 'DESKTOP-7QK2M1B\\alice:(OI)(CI)F']]);
});

test('the default runner reports an exit status, and a missing program as an error (no exception)', async () => {
  const exited = await runCommand(process.execPath, ['-e', 'process.stdout.write("out"); process.exit(3)']);
  assert.equal(exited.status, 3);
  assert.equal(exited.stdout, 'out');
  assert.equal(exited.error, undefined);
  const missing = await runCommand('exai-ws-no-such-program', []);
  assert.equal(missing.status, null);
  assert.equal(missing.error?.code, 'ENOENT');
});
