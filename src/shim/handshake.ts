/**
 * The frames of one attempt's handshake (link.ts: upgrading -> proving -> greeting -> acked)
 * and the words the user is told when it fails. No socket and no state: the link sends what
 * these build and acts on what they judge.
 *
 * No token, hello or client frame leaves before the listener proved that it holds this home's
 * token for the address connected to (proof.ts, DESIGN.md "Security model").
 */
import type { DaemonAddress } from '../local/files.js';
import { computeProof, proofAddress, proofValid, strangerMessage } from '../local/proof.js';
import { PROTOCOL_VERSION, parseProofFrame, type ChallengeFrame, type Hello, type HelloAck } from '../protocol/hello.js';
import { wsUrl } from './link-socket.js';

/** Hello refusals that no retry can cure: the shim gives up at once, as at a cold start. */
const FATAL_REFUSALS: ReadonlySet<string> = new Set(['unauthorized', 'bad_hello', 'not_hello', 'unsupported_protocol']);

/** The first frame of an attempt: only a nonce. */
export function challengeFrame(clientNonce: string): string {
  const challenge: ChallengeFrame = { type: 'challenge', nonce: clientNonce };
  return JSON.stringify(challenge);
}

/**
 * Why an attempt failed: `stranger` when the listener was not proven to be this home's daemon
 * (it was told nothing; the user is told what holds the port), else `failed`.
 */
export interface Failure {
  kind: 'failed' | 'stranger';
  why: string;
}

/** What the listener's answer to the challenge was (a daemon older than the challenge: `failed`, with what to do). */
export type ProofVerdict = { kind: 'proven'; clientProof: string } | Failure;

/** Judges `text`, the answer to the challenge with `clientNonce`, against this home's `token`. */
export function judgeProof(text: string, address: DaemonAddress, token: string, clientNonce: string): ProofVerdict {
  const proof = parseProofFrame(text);
  const bound = proofAddress(address.host, address.port);
  if (proof && proofValid(proof.proof, 'daemon', token, bound, clientNonce, proof.nonce)) {
    return { kind: 'proven', clientProof: computeProof('client', token, bound, clientNonce, proof.nonce) };
  }
  if (proof) return { kind: 'stranger', why: strangerWhy(address, `its proof does not match the token`) };
  // A daemon older than the challenge refuses it as a first frame that is not a hello.
  if (refusalCode(text) === 'not_hello') {
    return {
      kind: 'failed',
      why:
        `the exai-ws daemon at ${wsUrl(address)} is older than this shim: it cannot prove that it holds this home's token, ` +
        `so nothing was sent to it; run \`exai-ws restart\` to run the new version`,
    };
  }
  return { kind: 'stranger', why: strangerWhy(address, 'its answer to the challenge is no proof') };
}

/** The hello, with the client's proof and never the token; `resume` names the session to take up again. */
export function helloFrame(
  fields: Pick<Hello, 'client' | 'cwd' | 'server' | 'profile'>,
  pid: number,
  clientProof: string,
  resume: { sessionId: string; received: number } | undefined,
): string {
  const hello: Hello = { type: 'hello', protocol: PROTOCOL_VERSION, ...fields, pid, acks: true, auth_proof: clientProof };
  if (resume) {
    hello.session_id = resume.sessionId;
    hello.received = resume.received;
  }
  return JSON.stringify(hello);
}

/** What the daemon answered the hello with. */
export type AckVerdict =
  | { kind: 'open'; ack: Extract<HelloAck, { ok: true }> }
  /** Refused: `fatal` when no retry can cure it (a wrong token, an unsupported protocol). */
  | { kind: 'refused'; why: string; fatal: boolean }
  | { kind: 'garbled'; why: string };

export function judgeAck(text: string): AckVerdict {
  const ack = parseHelloAck(text);
  if (!ack) return { kind: 'garbled', why: 'the exai-ws daemon answered the hello with something that is not a hello_ack' };
  if (ack.ok) return { kind: 'open', ack };
  const code = String(ack.error?.code);
  // A full daemon or one shutting down may take a later attempt; a wrong token or protocol never will.
  return {
    kind: 'refused',
    why: `the exai-ws daemon refused the session (${code}: ${ack.error?.message})`,
    fatal: FATAL_REFUSALS.has(code),
  };
}

/** Why an attempt failed that got no proof (a stranger), or no hello_ack (`greeting`), within `timeoutMs`. */
export function silentWhy(greeting: boolean, address: DaemonAddress, timeoutMs: number): Failure {
  return greeting
    ? { kind: 'failed', why: `the exai-ws daemon at ${wsUrl(address)} did not answer the hello within ${timeoutMs} ms` }
    : { kind: 'stranger', why: strangerWhy(address, `it gave no proof within ${timeoutMs} ms`) };
}

/** The hello_ack in `text`; undefined when it is not one. */
function parseHelloAck(text: string): HelloAck | undefined {
  try {
    const ack = JSON.parse(text) as HelloAck | null;
    return ack?.type === 'hello_ack' ? ack : undefined;
  } catch {
    return undefined;
  }
}

export function strangerWhy(address: DaemonAddress, detail: string): string {
  return strangerMessage(address.host, address.port, detail);
}

/** The error code of a refused hello_ack; undefined when `text` is not one. */
export function refusalCode(text: string): string | undefined {
  const ack = parseHelloAck(text);
  return ack?.ok === false ? String(ack.error?.code) : undefined;
}

export function describeClose(code: number, reason: string): string {
  return `code ${code}${reason.length > 0 ? `: ${reason}` : ''}`;
}

/** Whoever answered the WebSocket upgrade with an HTTP status is not the daemon (nothing of value went with the upgrade). */
export function rejectedWhy(address: DaemonAddress, status: number): Failure {
  return { kind: 'stranger', why: strangerWhy(address, `it answered the WebSocket upgrade with HTTP ${status}`) };
}

/** What an attempt met that could not reach the daemon's address at all. */
export function unreachableWhy(address: DaemonAddress, attemptError: string): string {
  return `cannot reach the exai-ws daemon at ${wsUrl(address)} (${attemptError})`;
}

/**
 * Why an attempt failed whose socket closed before the hello_ack: what the socket reported;
 * else a daemon that closed after the hello (`failed`), or a listener that closed instead of
 * proving itself (`stranger`).
 */
export function closedBeforeAckWhy(
  greeting: boolean,
  address: DaemonAddress,
  attemptError: string | undefined,
  code: number,
  reason: string,
): Failure {
  if (attemptError !== undefined) return { kind: 'failed', why: `${unreachableWhy(address, attemptError)}; start it with: exai-ws daemon` };
  if (greeting) {
    return { kind: 'failed', why: `the exai-ws daemon closed the connection before the session started (${describeClose(code, reason)})` };
  }
  return { kind: 'stranger', why: strangerWhy(address, `it closed the connection instead (${describeClose(code, reason)})`) };
}
