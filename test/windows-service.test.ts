/**
 * `exai-ws service` on Windows, run on any platform: the Task Scheduler task definition (parsed
 * by a strict little XML reader here: well-formed, and the fields that make it a per-user logon
 * task without administrator rights), the Windows argument quoting it relies on, and the
 * install / uninstall / status flows with `platform: 'win32'`, a recording `schtasks` and a
 * recording icacls. No real Task Scheduler is touched.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { askStopDaemon, runServiceCommand, type ManagerResult } from '../src/commands/service.js';
import type { ServiceSpec } from '../src/commands/service-files.js';
import {
  TASK_FILE_NAME,
  decodeTaskFile,
  encodeTaskFile,
  parseTaskCommand,
  parseWindowsArgs,
  taskXml,
  windowsArg,
} from '../src/commands/windows-task.js';
import type { CommandResult } from '../src/local/acl.js';
import { Cleanup, makeHome, startDaemon } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

/**
 * A strict reader for the XML this project writes: one root, balanced tags, quoted attributes,
 * only the five predefined entities (or character references), no `<` or `&` loose in text.
 * Throws on anything else, so a test that uses it checks well-formedness.
 */
function parseXml(source: string): XmlElement {
  let text = source.replace(/^\uFEFF/, '');
  text = text.replace(/^<\?xml[^?]*\?>/, '').replace(/<!--[\s\S]*?-->/g, '');
  const root: XmlElement = { name: '#document', attrs: {}, children: [], text: '' };
  const stack = [root];
  const unescape = (raw: string) => {
    if (/&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);)/i.test(raw)) throw new Error(`bad entity in ${JSON.stringify(raw)}`);
    if (raw.includes('<')) throw new Error(`loose < in ${JSON.stringify(raw)}`);
    return raw.replace(/&(amp|lt|gt|quot|apos);/g, (_, n: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" })[n] as string);
  };
  const tag = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*"[^"]*")*)\s*(\/?)>/y;
  let i = 0;
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    const chunk = text.slice(i, lt < 0 ? text.length : lt);
    const top = stack[stack.length - 1] as XmlElement;
    if (chunk.trim() !== '') {
      if (top === root) throw new Error(`text outside the root: ${chunk}`);
      top.text += unescape(chunk);
    }
    if (lt < 0) break;
    tag.lastIndex = lt;
    const m = tag.exec(text);
    if (!m) throw new Error(`malformed tag at ${text.slice(lt, lt + 40)}`);
    const [, close, name, attrText, selfClose] = m as unknown as [string, string, string, string, string];
    if (close) {
      const open = stack.pop();
      if (open?.name !== name) throw new Error(`</${name}> closes <${open?.name}>`);
    } else {
      const attrs: Record<string, string> = {};
      for (const a of attrText.matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*"([^"]*)"/g)) attrs[a[1] as string] = unescape(a[2] as string);
      const element: XmlElement = { name, attrs, children: [], text: '' };
      if (top === root && root.children.length > 0) throw new Error('two root elements');
      top.children.push(element);
      if (!selfClose) stack.push(element);
    }
    i = tag.lastIndex;
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1]?.name}>`);
  const only = root.children[0];
  if (only === undefined) throw new Error('no root element');
  return only;
}

/** The text of the element at `path` (names separated by `/`), or undefined. */
function field(root: XmlElement, path: string): string | undefined {
  let at: XmlElement | undefined = root;
  for (const name of path.split('/')) at = at?.children.find((c) => c.name === name);
  return at?.text;
}

const SPEC: ServiceSpec = {
  program: 'C:\\Program Files\\nodejs\\node.exe',
  args: ['--max-semi-space-size=4', 'C:\\Users\\Jo Doe\\AppData\\Roaming\\npm\\node_modules\\exai-ws\\dist\\src\\cli.js', 'daemon'],
  env: [['EXAI_WS_HOME', 'C:\\Users\\Jo Doe\\AppData\\Local\\exai-ws']],
  home: 'C:\\Users\\Jo Doe\\AppData\\Local\\exai-ws',
};

test('the task XML is well-formed and is a per-user logon task at least privilege, restarted on failure, never time-limited', () => {
  const text = taskXml(SPEC, 'DESKTOP-7QK2M1B\\Jo Doe', 'C:\\Users\\Jo Doe');
  assert.match(text, /^<\?xml version="1\.0" encoding="UTF-16"\?>\r\n/);
  const task = parseXml(text);
  assert.equal(task.name, 'Task');
  assert.equal(task.attrs.xmlns, 'http://schemas.microsoft.com/windows/2004/02/mit/task');
  assert.equal(field(task, 'RegistrationInfo/URI'), '\\exai-ws');
  assert.equal(field(task, 'Triggers/LogonTrigger/UserId'), 'DESKTOP-7QK2M1B\\Jo Doe', 'at the logon of this user only: no admin needed');
  assert.equal(field(task, 'Triggers/LogonTrigger/Enabled'), 'true');
  assert.equal(field(task, 'Principals/Principal/UserId'), 'DESKTOP-7QK2M1B\\Jo Doe');
  assert.equal(field(task, 'Principals/Principal/LogonType'), 'InteractiveToken', 'runs in the logged-on session, no password stored');
  assert.equal(field(task, 'Principals/Principal/RunLevel'), 'LeastPrivilege');
  assert.equal(field(task, 'Settings/MultipleInstancesPolicy'), 'IgnoreNew');
  assert.equal(field(task, 'Settings/DisallowStartIfOnBatteries'), 'false');
  assert.equal(field(task, 'Settings/StopIfGoingOnBatteries'), 'false');
  assert.equal(field(task, 'Settings/ExecutionTimeLimit'), 'PT0S', 'no time limit: the default stops a task after 72 hours');
  assert.equal(field(task, 'Settings/Hidden'), 'true');
  assert.equal(field(task, 'Settings/RestartOnFailure/Interval'), 'PT1M');
  assert.equal(field(task, 'Settings/RestartOnFailure/Count'), '10');
  assert.equal(field(task, 'Actions/Exec/Command'), SPEC.program);
  assert.equal(field(task, 'Actions/Exec/WorkingDirectory'), 'C:\\Users\\Jo Doe');
  assert.deepEqual(
    parseWindowsArgs(field(task, 'Actions/Exec/Arguments') ?? ''),
    SPEC.args,
    'the daemon arguments, as node.exe splits them',
  );
  assert.deepEqual(parseTaskCommand(text), [SPEC.program, ...SPEC.args]);
  assert.ok(!text.includes('EXAI_WS_HOME'), 'a task has no environment of its own: nothing is written for it');
});

test('odd values stay well-formed and come back whole: &, <, quotes, trailing backslashes; a line break is refused', () => {
  const spec: ServiceSpec = {
    ...SPEC,
    program: 'C:\\A & B <x>\\node.exe',
    args: ['--max-semi-space-size=4', 'C:\\it\'s "here"\\dir with space\\', 'daemon'],
  };
  const text = taskXml(spec, "CORP\\o'brien&co", "C:\\Users\\o'brien");
  const task = parseXml(text);
  assert.equal(field(task, 'Principals/Principal/UserId'), "CORP\\o'brien&co");
  assert.deepEqual(parseTaskCommand(text), [spec.program, ...spec.args]);
  assert.throws(() => taskXml({ ...SPEC, args: ['a\r\nb'] }, 'X\\y', 'C:\\'), TypeError);
});

test('Windows argument quoting round-trips through the CommandLineToArgvW rules', () => {
  const table = [
    'plain',
    '',
    'with space',
    'tab\there',
    'quote"in',
    'C:\\dir\\',
    'C:\\dir with space\\',
    'a\\\\"b',
    '\\\\server\\share',
    '"',
    '\\',
  ];
  for (const word of table) assert.deepEqual(parseWindowsArgs(windowsArg(word)), [word], `round trip of ${JSON.stringify(word)}`);
  assert.deepEqual(parseWindowsArgs(table.map(windowsArg).join(' ')), table);
  assert.equal(windowsArg('C:\\dir with space\\'), '"C:\\dir with space\\\\"', 'a trailing backslash is doubled before the closing quote');
  assert.equal(windowsArg('C:\\plain\\path'), 'C:\\plain\\path');
  // What Windows itself writes: documented examples of the rules.
  assert.deepEqual(parseWindowsArgs('"a b c" d e'), ['a b c', 'd', 'e']);
  assert.deepEqual(parseWindowsArgs('"ab\\"c" "\\\\" d'), ['ab"c', '\\', 'd']);
  assert.deepEqual(parseWindowsArgs('a\\\\\\b d"e f"g h'), ['a\\\\\\b', 'de fg', 'h']);
  assert.deepEqual(parseWindowsArgs('a\\\\\\"b c d'), ['a\\"b', 'c', 'd']);
  assert.deepEqual(parseWindowsArgs('a\\\\\\\\"b c" d e'), ['a\\\\b c', 'd', 'e']);
});

test('the task file is UTF-16LE with a byte order mark, as schtasks /Create /XML reads it', () => {
  const text = taskXml(SPEC, 'PC\\Jürgen', 'C:\\Users\\Jürgen');
  const bytes = encodeTaskFile(text);
  assert.deepEqual([...bytes.subarray(0, 4)], [0xff, 0xfe, 0x3c, 0x00], 'BOM, then "<" in UTF-16LE');
  assert.equal(decodeTaskFile(bytes), text);
  assert.equal(decodeTaskFile(Buffer.from(`\uFEFF${text}`, 'utf8')), text, 'a file saved as UTF-8 by an editor is read too');
});

/** A schtasks that records every command and answers from a script. */
function recordingManager(answer: (args: readonly string[]) => Partial<ManagerResult> = () => ({})) {
  const calls: string[] = [];
  const manager = (command: string, args: readonly string[]): ManagerResult => {
    calls.push([command, ...args].join(' '));
    return { status: 0, stdout: '', stderr: '', ...answer(args) };
  };
  return { calls, manager };
}

function recordingIcacls(answer: (args: readonly string[]) => Partial<CommandResult> = () => ({})) {
  const calls: string[][] = [];
  const runner = (command: string, args: readonly string[]): Promise<CommandResult> => {
    calls.push([command, ...args]);
    return Promise.resolve({ status: 0, stdout: '', stderr: '', ...answer(args) });
  };
  return { calls, runner };
}

function capture() {
  let text = '';
  return { stdout: { write: (t: string) => (text += t) }, text: () => text };
}

/** A Windows user's world in a temp dir, with the settings folder under XDG_CONFIG_HOME (any platform's paths). */
function windowsIo(root: string, out: ReturnType<typeof capture>, manager: ReturnType<typeof recordingManager>['manager'] | null) {
  const icacls = recordingIcacls();
  const env = {
    XDG_CONFIG_HOME: join(root, 'config'),
    EXAI_WS_HOME: join(root, 'state'),
    EXAI_WS_CONFIG: join(root, 'servers.json'),
    EXAI_WS_SETTINGS: '',
    USERDOMAIN: 'DESKTOP-7QK2M1B',
    USERNAME: 'jo',
  };
  return {
    io: {
      stdout: out.stdout,
      env,
      platform: 'win32' as const,
      userHome: root,
      uid: 0,
      manager,
      waitForDaemon: false,
      aclRunner: icacls.runner,
    },
    icacls,
    file: join(root, 'config', 'exai-ws', TASK_FILE_NAME),
  };
}

const NOT_FOUND = { status: 1, stdout: '', stderr: 'ERROR: The system cannot find the file specified.\r\n' };

test('Windows: install writes the task XML in the settings folder (made private) and registers and runs it; again, only registers and runs', async () => {
  const root = makeHome(cleanup);
  const { calls, manager } = recordingManager((args) => (args[0] === '/End' ? NOT_FOUND : {}));
  const out = capture();
  const { io, icacls, file } = windowsIo(root, out, manager);
  assert.equal(await runServiceCommand(['install'], io), 0, out.text());
  assert.deepEqual(calls, ['schtasks /End /TN exai-ws', `schtasks /Create /TN exai-ws /XML ${file} /F`, 'schtasks /Run /TN exai-ws']);
  assert.deepEqual(
    icacls.calls,
    [['icacls', join(root, 'config', 'exai-ws'), '/inheritance:r', '/grant:r', 'DESKTOP-7QK2M1B\\jo:(OI)(CI)F']],
    'the settings folder it made (daemon.env goes there) is limited to the user',
  );
  const text = decodeTaskFile(readFileSync(file));
  assert.equal(field(parseXml(text), 'Principals/Principal/UserId'), 'DESKTOP-7QK2M1B\\jo');
  assert.equal(parseTaskCommand(text)?.at(-1), 'daemon');
  assert.match(out.text(), new RegExp(`^wrote: ${escape(file)}$`, 'm'));
  assert.match(out.text(), /^ran: schtasks \/End \/TN exai-ws \(ERROR: The system cannot find the file specified\.; nothing to undo\)$/m);
  assert.match(out.text(), /^ran: schtasks \/Run \/TN exai-ws$/m);
  assert.match(out.text(), /^enabled: task exai-ws starts the daemon at login and again when it fails$/m);
  assert.match(
    out.text(),
    /note: the task runs with your logon environment, .*: EXAI_WS_HOME, EXAI_WS_CONFIG set here reach it only when set for your user \(setx EXAI_WS_HOME "\.\.\."; setx EXAI_WS_CONFIG "\.\.\."\)/,
  );

  calls.length = 0;
  icacls.calls.length = 0;
  assert.equal(await runServiceCommand(['install'], io), 0);
  assert.deepEqual(
    calls,
    [`schtasks /Create /TN exai-ws /XML ${file} /F`, 'schtasks /Run /TN exai-ws'],
    'a running task with the same definition keeps running',
  );
  assert.deepEqual(icacls.calls, [], 'a settings folder that was there is left as it is');
});

test('Windows: uninstall ends and deletes the task and removes the file, also when the task was never registered', async () => {
  const root = makeHome(cleanup);
  const out = capture();
  const { io, file } = windowsIo(root, out, recordingManager().manager);
  assert.equal(await runServiceCommand(['install'], io), 0);
  const { calls, manager } = recordingManager();
  // The daemon is asked to stop gracefully before schtasks /End could end it outright.
  const askStop = (by: string) => {
    calls.push(`ask stop by ${by}`);
    return Promise.resolve('stopped: daemon 4242, gracefully');
  };
  const asked = capture();
  assert.equal(await runServiceCommand(['uninstall'], { ...io, stdout: asked.stdout, manager, askStop }), 0);
  assert.deepEqual(calls, ['ask stop by exai-ws service uninstall', 'schtasks /End /TN exai-ws', 'schtasks /Delete /TN exai-ws /F']);
  assert.match(asked.text(), /stopped: daemon 4242, gracefully/);
  assert.ok(!existsSync(file));

  assert.equal(await runServiceCommand(['install'], io), 0);
  const gone = recordingManager(() => NOT_FOUND);
  const out2 = capture();
  assert.equal(await runServiceCommand(['uninstall'], { ...io, stdout: out2.stdout, manager: gone.manager }), 0, out2.text());
  assert.ok(!existsSync(file), 'removed: nothing was registered to undo');
  assert.match(
    out2.text(),
    /ran: schtasks \/Delete \/TN exai-ws \/F \(ERROR: The system cannot find the file specified\.; nothing to undo\)/,
  );

  assert.equal(await runServiceCommand(['install'], io), 0);
  const refused = recordingManager((args) => (args[0] === '/Delete' ? { status: 1, stderr: 'ERROR: Access is denied.\r\n' } : {}));
  const out3 = capture();
  assert.equal(await runServiceCommand(['uninstall'], { ...io, stdout: out3.stdout, manager: refused.manager }), 1);
  assert.ok(existsSync(file), 'kept when Task Scheduler refused');
  assert.match(out3.text(), /failed: schtasks \/Delete \/TN exai-ws \/F: ERROR: Access is denied\./);
});

/** What `schtasks /Query /TN exai-ws /XML` prints for a registered task: Windows' own layout of the same definition. */
function registeredXml(command: string, args: string): string {
  return [
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">',
    '  <RegistrationInfo>',
    '    <URI>\\exai-ws</URI>',
    '  </RegistrationInfo>',
    '  <Actions Context="Author">',
    '    <Exec>',
    `      <Command>${command}</Command>`,
    `      <Arguments>${args}</Arguments>`,
    '    </Exec>',
    '  </Actions>',
    '</Task>',
    '',
  ].join('\r\n');
}

test('Windows: status reads the file, compares it with the registered task and shows its state', async () => {
  const root = makeHome(cleanup);
  const { io, file } = windowsIo(root, capture(), recordingManager().manager);
  assert.equal(await runServiceCommand(['install'], io), 0);
  const ours = parseTaskCommand(decodeTaskFile(readFileSync(file))) as string[];
  const [program, ...args] = ours;

  const running = recordingManager((a) =>
    a.includes('/XML')
      ? { stdout: registeredXml(program as string, args.map(windowsArg).join(' ')) }
      : { stdout: '"\\exai-ws","N/A","Running"\r\n' },
  );
  const out = capture();
  assert.equal(await runServiceCommand(['status'], { ...io, stdout: out.stdout, manager: running.manager }), 0, out.text());
  assert.deepEqual(running.calls, ['schtasks /Query /TN exai-ws /XML', 'schtasks /Query /TN exai-ws /FO CSV /NH']);
  assert.match(out.text(), new RegExp(`^installed: ${escape(file)}$`, 'm'));
  assert.match(out.text(), /^service manager: registered, Running$/m);
  assert.doesNotMatch(out.text(), /something else/);

  const other = recordingManager((a) =>
    a.includes('/XML') ? { stdout: registeredXml('C:\\old\\node.exe', 'old.js daemon') } : { stdout: '"\\exai-ws","N/A","Ready"' },
  );
  const out2 = capture();
  await runServiceCommand(['status'], { ...io, stdout: out2.stdout, manager: other.manager });
  assert.match(out2.text(), /the registered task runs something else: C:\\old\\node\.exe old\.js daemon; exai-ws service install/);
  assert.match(out2.text(), /service manager: registered, Ready/);

  const missing = recordingManager(() => NOT_FOUND);
  const out3 = capture();
  assert.equal(await runServiceCommand(['status'], { ...io, stdout: out3.stdout, manager: missing.manager }), 0);
  assert.match(out3.text(), /service manager: task exai-ws is not registered \(ERROR: The system cannot find the file specified\.\)/);
});

test('Windows as Wine runs it: schtasks answers 0 with no output, or fails silently, or is missing: lines, never a crash', async () => {
  const root = makeHome(cleanup);
  const silent = recordingManager(() => ({ status: 0, stdout: '' }));
  const { io } = windowsIo(root, capture(), silent.manager);
  assert.equal(await runServiceCommand(['install'], io), 0);
  const out = capture();
  assert.equal(await runServiceCommand(['status'], { ...io, stdout: out.stdout }), 0);
  assert.match(out.text(), /service manager: unknown \(schtasks \/Query printed no task definition for exai-ws\)/);

  const failing = recordingManager((a) => (a[0] === '/Create' ? { status: 1 } : {}));
  const out2 = capture();
  const root2 = makeHome(cleanup);
  const io2 = windowsIo(root2, out2, failing.manager).io;
  assert.equal(await runServiceCommand(['install'], io2), 1);
  assert.match(out2.text(), /^failed: schtasks \/Create \/TN exai-ws \/XML .* \/F: exit code 1$/m);
  assert.match(out2.text(), /^fix that, then run:\n {2}schtasks \/Create /m);

  const throwing = (): ManagerResult => {
    throw new Error('spawnSync schtasks EBADF');
  };
  const out3 = capture();
  assert.equal(await runServiceCommand(['install'], { ...io, stdout: out3.stdout, manager: throwing }), 1);
  assert.match(out3.text(), /failed: schtasks .*spawnSync schtasks EBADF/);
  const out4 = capture();
  assert.equal(await runServiceCommand(['status'], { ...io, stdout: out4.stdout, manager: throwing }), 0);
  assert.match(out4.text(), /service manager: not available \(spawnSync schtasks EBADF\)/);

  const enoent = recordingManager(() => ({ status: null, error: Object.assign(new Error('spawn schtasks ENOENT'), { code: 'ENOENT' }) }));
  const out5 = capture();
  assert.equal(await runServiceCommand(['install'], { ...io, stdout: out5.stdout, manager: enoent.manager }), 1);
  assert.match(out5.text(), /the service manager is not available here \(schtasks is not installed\); once it is, run:/);
});

test('Windows: with EXAI_WS_SERVICE_MANAGER=none the commands are printed; without USERNAME it says why', async () => {
  const root = makeHome(cleanup);
  const out = capture();
  const { io, file } = windowsIo(root, out, null);
  assert.equal(await runServiceCommand(['install'], io), 0);
  assert.match(
    out.text(),
    new RegExp(
      `service manager: skipped .*\\n {2}schtasks /End /TN exai-ws\\n {2}schtasks /Create /TN exai-ws /XML ${escape(file)} /F\\n {2}schtasks /Run /TN exai-ws\\n`,
    ),
  );

  const out2 = capture();
  const env = { ...io.env, USERNAME: '' };
  assert.equal(await runServiceCommand(['install'], { ...io, env, stdout: out2.stdout }), 1);
  assert.match(out2.text(), /cannot tell who you are: USERNAME is not set/);
});

test('Windows: a path with spaces is quoted for cmd.exe and PowerShell in the lines, not for a POSIX shell', async () => {
  const root = join(makeHome(cleanup), 'Jo Doe');
  const out = capture();
  const { io, file } = windowsIo(root, out, null);
  assert.equal(await runServiceCommand(['install'], io), 0);
  assert.ok(out.text().includes(`  schtasks /Create /TN exai-ws /XML "${file}" /F\n`), out.text());
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

test('the stop uninstall asks for first is graceful: the running daemon drains and removes its card; none running, nothing to say', async () => {
  const daemon = await startDaemon(cleanup, { plain: true });
  const line = await askStopDaemon('exai-ws service uninstall', daemon.clientEnv);
  assert.equal(line, `stopped: daemon ${daemon.pid}, gracefully`);
  assert.equal(await daemon.exited, 0);
  assert.ok(!existsSync(join(daemon.home, 'logs', 'ws_daemon.pid')), 'the card is removed by the daemon itself');
  assert.match(readFileSync(join(daemon.home, 'logs', 'ws_daemon.log'), 'utf8'), /"by":"exai-ws service uninstall","msg":"stop asked"/);
  assert.equal(await askStopDaemon('exai-ws service uninstall', daemon.clientEnv), null);
});
