/**
 * Windows launch of hosted servers, on every platform: command resolution with PATH and PATHEXT
 * (file lookups injected), quoting for cmd.exe and the C runtime read back by reference parsers
 * written from the documented rules, refusal of client values cmd.exe would expand, cmd-shim
 * reading, and the decisions of npx on Windows. Nothing here starts a Windows process.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SpawnError, type ChildSpec } from '../../src/hosting/child-transport.js';
import { isNpxCommand, readReveal, shWords, windowsLaunchOf, windowsNpxRunner } from '../../src/hosting/npx.js';
import {
  CMD_SPECIAL,
  batchLine,
  envValue,
  mergeEnv,
  parseCmdShim,
  planWindowsLaunch,
  quoteForBatch,
  quoteForRuntime,
  resolveCommand,
  withEnvValue,
} from '../../src/hosting/windows-command.js';

/** A file system of these files, compared without case as Windows does. */
function files(...paths: string[]): (path: string) => boolean {
  const set = new Set(paths.map((p) => p.toLowerCase()));
  return (path) => set.has(path.toLowerCase());
}

const ENV = { Path: 'C:\\Windows\\system32;"C:\\Program Files\\nodejs";C:\\Users\\me\\AppData\\Roaming\\npm', SystemRoot: 'C:\\Windows' };

test('envValue and withEnvValue: names without case on win32, as they are elsewhere', () => {
  assert.equal(envValue({ Path: 'a', PATH: 'b' }, 'PATH'), 'a');
  assert.equal(envValue({ path: '' }, 'PATH'), undefined);
  assert.deepEqual(withEnvValue({ Path: 'a', X: '1' }, 'PATH', 'b', 'win32'), { X: '1', PATH: 'b' });
  assert.deepEqual(withEnvValue({ Path: 'a' }, 'PATH', 'b', 'linux'), { Path: 'a', PATH: 'b' });
  assert.deepEqual(mergeEnv({ PATH: 'default', TEMP: 't' }, { Path: 'mine' }, 'win32'), { TEMP: 't', Path: 'mine' });
  assert.deepEqual(mergeEnv({ PATH: 'default' }, { Path: 'mine' }, 'linux'), { PATH: 'default', Path: 'mine' });
});

test('resolveCommand: PATH in order with PATHEXT, the name as is first when it has an extension, paths from cwd', () => {
  const isFile = files(
    'C:\\Program Files\\nodejs\\npx.cmd',
    'C:\\Program Files\\nodejs\\npx',
    'C:\\Users\\me\\AppData\\Roaming\\npm\\npx.cmd',
    'C:\\Program Files\\nodejs\\node.exe',
    'C:\\Users\\me\\AppData\\Roaming\\npm\\tool.bat',
    'C:\\Users\\me\\AppData\\Roaming\\npm\\tool.bat.cmd',
    'C:\\work\\bin\\srv.cmd',
    'C:\\work\\npx.cmd',
  );
  // The sh script `npx` beside npx.cmd has no extension: cmd.exe never runs it, PATHEXT finds the .cmd.
  // The extension is spelled as in PATHEXT (Windows' file names have no case).
  assert.equal(resolveCommand('npx', ENV, { isFile }), 'C:\\Program Files\\nodejs\\npx.CMD');
  assert.equal(resolveCommand('NODE', ENV, { isFile }), 'C:\\Program Files\\nodejs\\NODE.EXE');
  assert.equal(resolveCommand('tool.bat', ENV, { isFile }), 'C:\\Users\\me\\AppData\\Roaming\\npm\\tool.bat');
  assert.equal(resolveCommand('tool', ENV, { isFile }), 'C:\\Users\\me\\AppData\\Roaming\\npm\\tool.BAT');
  assert.equal(resolveCommand('tool', { ...ENV, PATHEXT: '.CMD;.EXE' }, { isFile }), undefined);
  assert.equal(resolveCommand('bin\\srv', ENV, { isFile, cwd: 'C:\\work' }), 'C:\\work\\bin\\srv.CMD');
  assert.equal(resolveCommand('C:/work/bin/srv.cmd', ENV, { isFile }), 'C:\\work\\bin\\srv.cmd');
  // A bare name is never looked for in the working directory (a client's folder).
  assert.equal(resolveCommand('npx', { PATH: 'C:\\nowhere' }, { isFile, cwd: 'C:\\work' }), undefined);
  assert.equal(resolveCommand('missing', ENV, { isFile }), undefined);
});

/**
 * The C runtime's reading of a command line tail (the documented rules: 2n backslashes before a
 * quote are n backslashes and a quote that opens or closes; 2n+1 are n and a literal quote).
 */
function runtimeArgs(line: string): string[] {
  const args: string[] = [];
  let word: string | undefined;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    let slashes = 0;
    for (; line[i] === '\\'; i++) slashes++;
    const char = line[i];
    if (char === '"') {
      word = (word ?? '') + '\\'.repeat(slashes >> 1);
      if (slashes % 2) word += '"';
      else quoted = !quoted;
    } else {
      if (slashes) word = (word ?? '') + '\\'.repeat(slashes);
      if (char === undefined) break;
      if ((char === ' ' || char === '\t') && !quoted) {
        if (word !== undefined) args.push(word);
        word = undefined;
      } else word = (word ?? '') + char;
    }
  }
  if (word !== undefined) args.push(word);
  return args;
}

/**
 * cmd.exe's reading of a line with carets, for the two passes a batch file's `%*` goes through:
 * outside quotes a caret takes the next character literally; a quote switches quoting; percent
 * signs are looked at first, and a `%NAME%` with no caret in it would be a variable.
 */
function cmdPass(line: string): { text: string; variables: string[]; unquotedSpecial: string[] } {
  const variables = [...line.matchAll(/%([^%^]+)%/g)].map((m) => m[1] as string);
  let text = '';
  let quoted = false;
  const unquotedSpecial: string[] = [];
  for (let i = 0; i < line.length; i++) {
    const char = line[i] as string;
    if (char === '^' && !quoted) {
      text += line[++i] ?? '';
      continue;
    }
    if (char === '"') quoted = !quoted;
    else if (!quoted && '&|<>()'.includes(char)) unquotedSpecial.push(char);
    text += char;
  }
  return { text, variables, unquotedSpecial };
}

const TRICKY = [
  '',
  'plain',
  'two words',
  'C:\\Program Files\\x\\',
  'C:\\dir\\',
  'say "hi"',
  'back\\"slash',
  'a\\\\"b',
  '\\\\server\\share',
  '%PATH%',
  '100%',
  '%%',
  'wow!',
  'a^b',
  'a & calc',
  'x | y',
  '<in >out',
  '(paren)',
  'a"&"b',
  '"quoted"',
  'tab\there',
  '{"json": ["a b", 1]}',
  'C:\\Program Files (x86)\\App',
  'a,b;c=d',
  'ünïcødé ✓',
];

test('quoteForRuntime: the C runtime reads every word back exactly', () => {
  for (const word of TRICKY) assert.deepEqual(runtimeArgs(quoteForRuntime(word)), [word], JSON.stringify(word));
  assert.deepEqual(runtimeArgs(TRICKY.map(quoteForRuntime).join(' ')), TRICKY);
});

test('quoteForBatch: through both cmd.exe passes, no variable, no unquoted metacharacter, then the exact words', () => {
  const line = TRICKY.map(quoteForBatch).join(' ');
  const first = cmdPass(line); // the /c line, which starts the batch file
  const second = cmdPass(first.text); // the batch file's own line that expands %*
  for (const pass of [first, second]) {
    assert.deepEqual(pass.variables, [], 'a %NAME% cmd.exe would expand');
    assert.deepEqual(pass.unquotedSpecial, [], 'a metacharacter cmd.exe would act on');
  }
  assert.deepEqual(runtimeArgs(second.text), TRICKY);
  // Never a bare quote: cmd.exe's quote state never switches on, on either pass.
  assert.doesNotMatch(line.replace(/\^\^\^"/g, ''), /"/);
  assert.equal(quoteForBatch('a b'), '^^^"a^^^ b^^^"');
});

test('batchLine: the batch file in plain quotes, then its words', () => {
  assert.equal(batchLine('C:\\Program Files (x86)\\x y\\srv.cmd', ['1']), '"C:\\Program Files (x86)\\x y\\srv.cmd" ^^^"1^^^"');
});

const SRV: ChildSpec = { command: 'srv', args: ['--root', 'C:\\proj'], env: { ...ENV }, cwd: 'C:\\proj' };
const srvFiles = files('C:\\Users\\me\\AppData\\Roaming\\npm\\srv.cmd', 'C:\\Program Files\\nodejs\\node.exe');

test('planWindowsLaunch: a .cmd runs through cmd.exe with verbatim arguments; an .exe, unknown names and other platforms as they are', () => {
  const planned = planWindowsLaunch(SRV, { platform: 'win32', isFile: srvFiles });
  assert.equal(planned.command, 'C:\\Windows\\System32\\cmd.exe');
  assert.equal(planned.verbatim, true);
  assert.deepEqual(planned.args, ['/d', '/s', '/c', `"${batchLine('C:\\Users\\me\\AppData\\Roaming\\npm\\srv.CMD', SRV.args)}"`]);
  assert.deepEqual([planned.env, planned.cwd], [SRV.env, SRV.cwd]);
  assert.equal(
    planWindowsLaunch({ ...SRV, env: { ...ENV, ComSpec: 'D:\\cmd.exe' } }, { platform: 'win32', isFile: srvFiles }).command,
    'D:\\cmd.exe',
  );
  for (const spec of [
    { ...SRV, command: 'node' },
    { ...SRV, command: 'nothing' },
  ]) {
    assert.equal(planWindowsLaunch(spec, { platform: 'win32', isFile: srvFiles }), spec);
  }
  assert.equal(planWindowsLaunch(SRV, { platform: 'linux', isFile: srvFiles }), SRV);
  assert.equal(planWindowsLaunch(SRV, { platform: 'darwin', isFile: srvFiles }), SRV);
});

test('planWindowsLaunch: EUNSAFE for each character cmd.exe would read in a client value, in an argument or an env value', () => {
  for (const char of CMD_SPECIAL) {
    const folder = `C:\\pro${char}j`;
    for (const spec of [
      { ...SRV, args: ['--root', folder], clientValues: [folder, `pro${char}j`] },
      { ...SRV, args: [`--root=${folder}`], clientValues: [folder] },
      { ...SRV, env: { ...ENV, ROOT: folder }, clientValues: [folder] },
    ]) {
      assert.throws(
        () => planWindowsLaunch(spec, { platform: 'win32', isFile: srvFiles }),
        (error: unknown) =>
          error instanceof SpawnError &&
          error.systemCode === 'EUNSAFE' &&
          error.message.startsWith(
            `the value ${JSON.stringify(folder)} from the client has ${JSON.stringify(char)}, which cmd.exe would expand;`,
          ),
        JSON.stringify(char),
      );
    }
    // Not a batch file: nothing goes through cmd.exe, so nothing is refused.
    const direct = { ...SRV, command: 'node', args: [folder], clientValues: [folder] };
    assert.equal(planWindowsLaunch(direct, { platform: 'win32', isFile: srvFiles }), direct);
  }
  // The same characters from the config itself are the user's own, quoted; a clean client value passes.
  const own = { ...SRV, args: ['--name', 'a & b %PATH%', 'C:\\proj'], clientValues: ['C:\\proj', 'proj', ''] };
  assert.equal(planWindowsLaunch(own, { platform: 'win32', isFile: srvFiles }).verbatim, true);
  // A line break cannot be passed at all; nor can a batch file whose path has a %.
  assert.throws(() => planWindowsLaunch({ ...SRV, args: ['a\nb'] }, { platform: 'win32', isFile: srvFiles }), /EUNSAFE|line break/);
  const percent = { ...SRV, command: 'C:\\100%\\srv.cmd' };
  assert.throws(() => planWindowsLaunch(percent, { platform: 'win32', isFile: files('C:\\100%\\srv.cmd') }), /has "%"/);
});

/** A shim as cmd-shim 4 to 8 writes it for a `#!/usr/bin/env node` bin (CRLF, as on disk). */
const SHIM_NODE = [
  '@ECHO off',
  'GOTO start',
  ':find_dp0',
  'SET dp0=%~dp0',
  'EXIT /b',
  ':start',
  'SETLOCAL',
  'CALL :find_dp0',
  '',
  'IF EXIST "%dp0%\\node.exe" (',
  '  SET "_prog=%dp0%\\node.exe"',
  ') ELSE (',
  '  SET "_prog=node"',
  '  SET PATHEXT=%PATHEXT:;.JS;=;%',
  ')',
  '',
  'endLocal & goto #_undefined_# 2>NUL || title %COMSPEC% & "%_prog%" --no-warnings "%dp0%\\..\\@modelcontextprotocol\\server-memory\\dist\\index.js" %*',
  '',
].join('\r\n');

test('parseCmdShim: new and old npm shims, a bin without a shebang; anything else undefined', () => {
  assert.deepEqual(parseCmdShim(SHIM_NODE), {
    program: 'node',
    programArgs: ['--no-warnings'],
    target: '..\\@modelcontextprotocol\\server-memory\\dist\\index.js',
  });
  const old = [
    '@IF EXIST "%~dp0\\node.exe" (',
    '  "%~dp0\\node.exe"  "%~dp0\\..\\tsc\\bin\\tsc" %*',
    ') ELSE (',
    '  @SETLOCAL',
    '  @SET PATHEXT=%PATHEXT:;.JS;=;%',
    '  node  "%~dp0\\..\\tsc\\bin\\tsc" %*',
    ')',
  ].join('\r\n');
  assert.deepEqual(parseCmdShim(old), { program: 'node', programArgs: [], target: '..\\tsc\\bin\\tsc' });
  const native =
    '@ECHO off\r\nGOTO start\r\n:find_dp0\r\nSET dp0=%~dp0\r\nEXIT /b\r\n:start\r\nSETLOCAL\r\nCALL :find_dp0\r\n"%dp0%\\..\\tool\\bin\\tool.exe"   %*\r\n';
  assert.deepEqual(parseCmdShim(native), { program: undefined, programArgs: [], target: '..\\tool\\bin\\tool.exe' });
  assert.equal(parseCmdShim(SHIM_NODE.replace('--no-warnings', '').replace('SETLOCAL\r\n', 'SETLOCAL\r\n@SET FOO=1\r\n')), undefined);
  assert.equal(parseCmdShim('@echo off\r\npython server.py %*\r\n'), undefined);
  assert.equal(parseCmdShim(SHIM_NODE.replace(/"_prog=node"/, '"_prog=/bin/sh"')), undefined);
});

test("windowsLaunchOf: a shim runs as node <script>, with the node beside it, else on PATH, else the daemon's", () => {
  const shim = 'C:\\proj\\node_modules\\.bin\\mcp-server-memory.cmd';
  const script = 'C:\\proj\\node_modules\\@modelcontextprotocol\\server-memory\\dist\\index.js';
  const base = { path: 'C:\\proj\\node_modules\\.bin;C:\\Program Files\\nodejs', pathext: '.EXE;.CMD', execPath: 'D:\\daemon\\node.exe' };
  assert.deepEqual(windowsLaunchOf(shim, SHIM_NODE, { ...base, isFile: files('C:\\Program Files\\nodejs\\node.exe') }), {
    command: 'C:\\Program Files\\nodejs\\node.EXE',
    leadingArgs: ['--no-warnings', script],
    script,
  });
  assert.equal(
    windowsLaunchOf(shim, SHIM_NODE, { ...base, isFile: files('C:\\proj\\node_modules\\.bin\\node.exe') })?.command,
    'C:\\proj\\node_modules\\.bin\\node.exe',
  );
  assert.equal(windowsLaunchOf(shim, SHIM_NODE, { ...base, isFile: files() })?.command, 'D:\\daemon\\node.exe');
  assert.deepEqual(windowsLaunchOf('C:\\bin\\srv.exe', undefined, { ...base, isFile: files() }), {
    command: 'C:\\bin\\srv.exe',
    leadingArgs: [],
    script: 'C:\\bin\\srv.exe',
  });
  assert.equal(windowsLaunchOf('C:\\bin\\srv.cmd', '@python srv.py %*', { ...base, isFile: files() }), undefined);
  assert.equal(windowsLaunchOf('C:\\bin\\srv.ps1', '', { ...base, isFile: files() }), undefined);
});

test('npx on Windows: npx and npx.cmd in any case; npx-cli.js beside the npx.cmd on PATH; what the stand-in prints', () => {
  for (const command of ['npx', 'NPX.CMD', 'C:\\Program Files\\nodejs\\npx.cmd', 'C:/nodejs/Npx'])
    assert.ok(isNpxCommand(command, 'win32'), command);
  assert.ok(!isNpxCommand('npx.cmd', 'linux'));
  assert.ok(isNpxCommand('/usr/bin/npx', 'linux'));
  assert.ok(!isNpxCommand('npx.ps1', 'win32'));

  const cli = 'C:\\Program Files\\nodejs\\node_modules\\npm\\bin\\npx-cli.js';
  const node = 'C:\\Program Files\\nodejs\\node.exe';
  const execPath = 'D:\\daemon\\node.exe';
  const npxCmd = 'C:\\Program Files\\nodejs\\npx.cmd';
  assert.deepEqual(windowsNpxRunner('npx', ENV, { isFile: files(npxCmd, cli, node), execPath }), { node, cli });
  assert.deepEqual(windowsNpxRunner('npx', ENV, { isFile: files(npxCmd, cli), execPath }), { node: execPath, cli });
  // No npm beside it (a wrapper npx.cmd, a missing npx): launched as configured, through cmd.exe.
  assert.equal(windowsNpxRunner('npx', ENV, { isFile: files(npxCmd), execPath }), undefined);
  assert.equal(windowsNpxRunner('npx', ENV, { isFile: files(), execPath }), undefined);

  const printed = `npm warn exec\0exai-ws-npx\0'mcp-server-memory'\0C:\\p\\node_modules\\.bin;C:\\Windows\0.COM;.EXE;.CMD\0`;
  assert.deepEqual(readReveal(printed), {
    script: "'mcp-server-memory'",
    path: 'C:\\p\\node_modules\\.bin;C:\\Windows',
    pathext: '.COM;.EXE;.CMD',
  });
  assert.equal(readReveal('nothing here'), undefined);
  assert.deepEqual(shWords("'mcp-server-memory'"), ['mcp-server-memory']);
  assert.deepEqual(shWords("mcp-server-memory 'a b' \"c\\\"d\" e\\ f ''"), ['mcp-server-memory', 'a b', 'c"d', 'e f', '']);
  assert.deepEqual(shWords("'it'\\''s'"), ["it's"]);
  assert.equal(shWords("'open"), undefined);
});
