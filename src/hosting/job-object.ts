/**
 * The few kernel32 calls a Windows Job Object needs, bound through koffi (FFI), and nothing
 * else. A job is how Windows ends a process tree: every process created by a member joins the
 * job, TerminateJobObject ends them all at once, and a job with KILL_ON_JOB_CLOSE ends them all
 * when its last handle closes, which the system does for a process that dies however it dies.
 *
 * koffi is loaded here only, on the first call of {@link loadKernel32} on win32: elsewhere it
 * is never required, so the daemon's start and memory on Linux and macOS, and the shim (which
 * never imports this file), are unchanged. Callers take a {@link Kernel32} so tests can pass a
 * fake one on every platform.
 */
import { createRequire } from 'node:module';

/** A kernel32 HANDLE as koffi 3 gives it (a pointer as a BigInt); 0n is no handle. */
export type Handle = bigint;

/** The calls a job per hosted server needs; each returns what the Win32 function does. */
export interface Kernel32 {
  /** CreateJobObjectW(NULL, NULL): an anonymous job, or 0n. */
  createJobObject(): Handle;
  /** SetInformationJobObject(JobObjectExtendedLimitInformation) with only KILL_ON_JOB_CLOSE set. */
  setKillOnClose(job: Handle): boolean;
  /** OpenProcess with the rights AssignProcessToJobObject and a wait need, or 0n. */
  openProcess(pid: number): Handle;
  assignProcessToJobObject(job: Handle, process: Handle): boolean;
  /** WaitForSingleObject(process, 0) is WAIT_OBJECT_0: the process has exited. */
  hasExited(process: Handle): boolean;
  terminateJobObject(job: Handle, exitCode: number): boolean;
  /** QueryInformationJobObject(JobObjectBasicAccountingInformation).ActiveProcesses, or null when it failed. */
  activeProcesses(job: Handle): number | null;
  closeHandle(handle: Handle): boolean;
  /** GetLastError() right after the call that failed. */
  lastError(): number;
}

// Values from the Windows SDK (winnt.h); the layouts below are the x64 (and arm64) ones.
const JOB_OBJECT_BASIC_ACCOUNTING_INFORMATION = 1;
const JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9;
const JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000;
const WAIT_OBJECT_0 = 0;
/** PROCESS_TERMINATE | PROCESS_SET_QUOTA (both required to assign) | PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE. */
export const PROCESS_ACCESS = 0x0001 | 0x0100 | 0x1000 | 0x0010_0000;
/** sizeof(JOBOBJECT_EXTENDED_LIMIT_INFORMATION): the basic limits (64), IO_COUNTERS (48), four SIZE_T. */
const EXTENDED_LIMIT_BYTES = 144;
/** offsetof(JOBOBJECT_BASIC_LIMIT_INFORMATION, LimitFlags): after two LARGE_INTEGERs. */
const LIMIT_FLAGS_OFFSET = 16;
/** sizeof(JOBOBJECT_BASIC_ACCOUNTING_INFORMATION): four LARGE_INTEGERs, four DWORDs. */
const ACCOUNTING_BYTES = 48;
/** offsetof(JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, ActiveProcesses). */
const ACTIVE_PROCESSES_OFFSET = 40;

/** The bytes SetInformationJobObject gets: every limit off except KILL_ON_JOB_CLOSE. */
export function killOnCloseLimits(): Buffer {
  const info = Buffer.alloc(EXTENDED_LIMIT_BYTES);
  info.writeUInt32LE(JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, LIMIT_FLAGS_OFFSET);
  return info;
}

let loaded: Kernel32 | undefined;

/**
 * Binds kernel32 through koffi, once per process. Throws on any platform but win32 (nothing
 * Windows-only is ever called elsewhere), and when koffi or its binary package for this
 * machine cannot be loaded; the caller then falls back to taskkill.
 */
export function loadKernel32(platform: NodeJS.Platform = process.platform): Kernel32 {
  if (platform !== 'win32') throw new Error(`kernel32 exists only on Windows, not on ${platform}`);
  loaded ??= bind();
  return loaded;
}

/** The slice of koffi's API used here (its own types are not needed to build elsewhere). */
interface Koffi {
  load(path: string): { func(prototype: string): (...args: unknown[]) => unknown };
}

function bind(): Kernel32 {
  // A require made here, not an import at the top: only this call, on Windows, loads koffi.
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const lib = koffi.load('kernel32.dll');
  // BOOL is a 32-bit int; HANDLE a pointer (a BigInt, 0n for NULL).
  const CreateJobObjectW = lib.func('void *__stdcall CreateJobObjectW(void *attributes, const char16_t *name)');
  const SetInformationJobObject = lib.func('int __stdcall SetInformationJobObject(void *job, int infoClass, void *info, uint32_t length)');
  const OpenProcess = lib.func('void *__stdcall OpenProcess(uint32_t access, int inherit, uint32_t pid)');
  const AssignProcessToJobObject = lib.func('int __stdcall AssignProcessToJobObject(void *job, void *process)');
  const TerminateJobObject = lib.func('int __stdcall TerminateJobObject(void *job, uint32_t exitCode)');
  const QueryInformationJobObject = lib.func(
    'int __stdcall QueryInformationJobObject(void *job, int infoClass, void *info, uint32_t length, uint32_t *returned)',
  );
  const WaitForSingleObject = lib.func('uint32_t __stdcall WaitForSingleObject(void *handle, uint32_t milliseconds)');
  const CloseHandle = lib.func('int __stdcall CloseHandle(void *handle)');
  const GetLastError = lib.func('uint32_t __stdcall GetLastError()');
  const handle = (value: unknown): Handle => (typeof value === 'bigint' ? value : 0n);
  const ok = (value: unknown): boolean => value !== 0 && value !== false;
  return {
    createJobObject: () => handle(CreateJobObjectW(null, null)),
    setKillOnClose: (job) => {
      const info = killOnCloseLimits();
      return ok(SetInformationJobObject(job, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, info, info.length));
    },
    openProcess: (pid) => handle(OpenProcess(PROCESS_ACCESS, 0, pid)),
    assignProcessToJobObject: (job, process) => ok(AssignProcessToJobObject(job, process)),
    hasExited: (process) => WaitForSingleObject(process, 0) === WAIT_OBJECT_0,
    terminateJobObject: (job, exitCode) => ok(TerminateJobObject(job, exitCode)),
    activeProcesses: (job) => {
      // koffi passes a Buffer's own memory for a plain pointer: the call fills it in place.
      const info = Buffer.alloc(ACCOUNTING_BYTES);
      if (!ok(QueryInformationJobObject(job, JOB_OBJECT_BASIC_ACCOUNTING_INFORMATION, info, info.length, null))) return null;
      return info.readUInt32LE(ACTIVE_PROCESSES_OFFSET);
    },
    closeHandle: (h) => ok(CloseHandle(h)),
    lastError: () => Number(GetLastError()),
  };
}
