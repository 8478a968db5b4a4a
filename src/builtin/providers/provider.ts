/**
 * One model provider reached through the official `openai` client with its own base URL:
 * streaming chat with a shared concurrency limit, 429 retries that honour `Retry-After`
 * (bounded in attempts and total time), a deadline per attempt, and a cached `/models` list.
 *
 * The `openai` module is loaded on first use: it costs ~250 ms, which daemon start-up and
 * `exai-ws stdio` should not pay when no provider is ever called.
 */
import type OpenAI from 'openai';
import { AbortedError, Limiter } from './limiter.js';
import type { ProviderSettings, ProvidersConfig } from './settings.js';
import { ProviderStats } from './stats.js';
import type { ContactReport, ProviderState } from '../../local/health.js';
import { ProviderError, type ProviderErrorKind } from './provider-error.js';
import type { LocalErrorCode } from '../../local/errors.js';

export interface ChatRequest {
  model: string;
  prompt: string;
  systemPrompt?: string | undefined;
  temperature?: number | undefined;
  maxTokens?: number | undefined;
}

export interface ChatResult {
  text: string;
  model: string;
  finishReason: string | null;
  usage: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number } | null;
  attempts: number;
}

export interface ChatOptions {
  /** Aborting cancels the call at once: the waiting slot or the provider request. */
  signal?: AbortSignal | undefined;
  /** Receives each piece of the answer as it streams in. */
  onText?: ((delta: string, soFar: string) => void) | undefined;
}

export interface ModelList {
  models: string[];
  source: 'live' | 'catalog';
  /** Why the live list could not be used, when it could not. */
  error?: string;
}

/** The first wait when a 429 carries no Retry-After, doubled per attempt. */
const DEFAULT_RETRY_WAIT_MS = 1_000;
/**
 * How long a failed `/models` answer is reused: long enough that a burst of calls does not ask
 * a provider that is down once each, short enough that one that is back up is seen soon.
 */
export const FAILED_MODELS_TTL_MS = 10_000;

let openaiModule: Promise<typeof import('openai')> | undefined;
const loadOpenAI = () => (openaiModule ??= import('openai'));

export class Provider {
  readonly settings: ProviderSettings;
  readonly limiter: Limiter;
  readonly stats = new ProviderStats();
  private readonly config: ProvidersConfig;
  private client: Promise<OpenAI> | undefined;
  private modelCache: { list: ModelList; atMs: number } | undefined;
  private modelFetch: Promise<ModelList> | undefined;
  private contact: ContactReport;

  constructor(settings: ProviderSettings, config: ProvidersConfig) {
    this.settings = settings;
    this.config = config;
    this.limiter = new Limiter(settings.maxInflight);
    this.contact = { state: settings.configured ? 'unknown' : 'not_configured', last_error: null, last_error_at: null };
  }

  /** What the last chat or models listing said. */
  get lastContact(): Readonly<ContactReport> {
    return this.contact;
  }

  /**
   * The provider as error texts name it: its label and the base URL, with the variable that
   * set it (`OpenAI-compatible (EXAI_OPENAI_BASE_URL=http://127.0.0.1:9/v1)`).
   */
  get where(): string {
    const { label, baseUrl, urlVar, urlFromEnv } = this.settings;
    return urlFromEnv ? `${label} (${urlVar}=${baseUrl})` : `${label} (${baseUrl}, the default ${urlVar})`;
  }

  /** Records one contact's outcome: success, or the failure a call was rejected with. */
  private record(outcome: 'ok' | ProviderError): void {
    if (outcome === 'ok') {
      this.contact = { ...this.contact, state: 'ok' };
      // The provider answers again: a models listing that failed is not reused.
      if (this.modelCache?.list.error !== undefined) this.modelCache = undefined;
      return;
    }
    const state = STATE_OF[outcome.kind];
    if (state === undefined) return;
    this.contact = { state, last_error: outcome.message, last_error_at: new Date().toISOString() };
  }

  get id(): string {
    return this.settings.id;
  }

  /**
   * The provider's models: its `/models` answer when it gives one (cached for the TTL, asked
   * with a short deadline), else the built-in catalog. Never rejects.
   */
  models(): Promise<ModelList> {
    const catalog: ModelList = { models: [...this.settings.catalog], source: 'catalog' };
    if (!this.settings.configured) return Promise.resolve(catalog);
    const cached = this.modelCache;
    const ttlMs = cached?.list.error === undefined ? this.config.modelsTtlMs : Math.min(this.config.modelsTtlMs, FAILED_MODELS_TTL_MS);
    if (cached && Date.now() - cached.atMs < ttlMs) return Promise.resolve(cached.list);
    this.modelFetch ??= this.fetchModels(catalog).finally(() => (this.modelFetch = undefined));
    return this.modelFetch;
  }

  private async fetchModels(catalog: ModelList): Promise<ModelList> {
    let list: ModelList;
    try {
      const client = await this.openai();
      const page = await client.models.list({ timeout: this.config.modelsTimeoutMs, maxRetries: 0 });
      const ids = page.data.map((m) => m.id).filter((id) => typeof id === 'string' && id.length > 0);
      this.record('ok');
      list = ids.length > 0 ? { models: ids, source: 'live' } : { ...catalog, error: `${this.where} listed no models` };
    } catch (error) {
      const failure = await this.translate(error, 'GET /models');
      this.record(failure);
      list = { ...catalog, error: failure.message };
    }
    this.modelCache = { list, atMs: Date.now() };
    return list;
  }

  /**
   * Runs one chat completion, streamed. Waits for a slot in arrival order; retries 429s after
   * their Retry-After while attempts and the retry budget last. Rejects with {@link ProviderError}.
   */
  async chat(request: ChatRequest, options: ChatOptions = {}): Promise<ChatResult> {
    const { signal } = options;
    if (!this.settings.configured) {
      throw new ProviderError('not_configured', `${this.settings.label} is not configured: ${this.settings.setupHint}`);
    }
    this.stats.calls++;
    const queuedAtMs = performance.now();
    let release: () => void;
    try {
      release = await this.limiter.acquire(signal);
    } catch (error) {
      this.stats.cancelled++;
      throw error instanceof AbortedError ? new ProviderError('cancelled', error.message) : error;
    }
    const startedAtMs = performance.now();
    this.stats.queueWait.add(startedAtMs - queuedAtMs);
    try {
      const result = await this.withRetries(request, options);
      this.stats.latency.add(performance.now() - startedAtMs);
      this.record('ok');
      return result;
    } catch (error) {
      if (error instanceof ProviderError && error.kind === 'cancelled') this.stats.cancelled++;
      else this.stats.errors++;
      if (error instanceof ProviderError) this.record(error);
      throw error;
    } finally {
      release();
    }
  }

  private async withRetries(request: ChatRequest, options: ChatOptions): Promise<ChatResult> {
    const budgetEndsMs = Date.now() + this.config.retryBudgetMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return { ...(await this.attempt(request, options)), attempts: attempt };
      } catch (error) {
        if (!(error instanceof RateLimited)) throw error;
        this.stats.rateLimited++;
        this.contact = { ...this.contact, state: 'rate_limited' };
        const waitMs = error.retryAfterMs ?? DEFAULT_RETRY_WAIT_MS * 2 ** (attempt - 1);
        const left = budgetEndsMs - Date.now();
        if (attempt >= this.config.maxAttempts || waitMs > left) {
          throw new ProviderError(
            'rate_limited',
            `${this.where} is rate limiting requests (HTTP 429) and still was after ${attempt} attempt${attempt > 1 ? 's' : ''}` +
              (error.retryAfterMs !== undefined ? `; it asked to retry after ${Math.ceil(error.retryAfterMs / 1000)} s` : '') +
              '. Try again later or lower the request rate.',
          );
        }
        this.stats.retries++;
        await sleep(waitMs, options.signal);
      }
    }
  }

  private async attempt(request: ChatRequest, options: ChatOptions): Promise<Omit<ChatResult, 'attempts'>> {
    const client = await this.openai();
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.config.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline.signal]) : deadline.signal;
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [];
    if (request.systemPrompt) messages.push({ role: 'system', content: request.systemPrompt });
    messages.push({ role: 'user', content: request.prompt });
    let text = '';
    let finishReason: string | null = null;
    let usage: ChatResult['usage'] = null;
    let model = request.model;
    try {
      const stream = await client.chat.completions.create(
        {
          model: request.model,
          messages,
          stream: true,
          ...(request.temperature !== undefined ? { temperature: request.temperature } : {}),
          ...(request.maxTokens !== undefined ? { max_tokens: request.maxTokens } : {}),
        },
        { signal, maxRetries: 0, timeout: this.config.timeoutMs },
      );
      for await (const chunk of stream) {
        if (chunk.model) model = chunk.model;
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices[0];
        if (choice?.finish_reason) finishReason = choice.finish_reason;
        const delta = choice?.delta?.content;
        if (typeof delta === 'string' && delta.length > 0) {
          text += delta;
          options.onText?.(delta, text);
        }
      }
      return { text, model, finishReason, usage };
    } catch (error) {
      if (options.signal?.aborted) throw new ProviderError('cancelled', 'the chat was cancelled');
      if (deadline.signal.aborted) {
        throw new ProviderError('timeout', `${this.where} did not finish within ${this.config.timeoutMs} ms (EXAI_WS_PROVIDER_TIMEOUT_MS)`);
      }
      throw await this.translate(error, 'chat', request);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Turns a failed request (`what`: `chat` or `GET /models`) into what the user reads. A chat's
   * 429 becomes {@link RateLimited} (retried); its 404 names the valid models.
   */
  private async translate(error: unknown, what: 'chat', request: ChatRequest): Promise<ProviderError | RateLimited>;
  private async translate(error: unknown, what: 'GET /models'): Promise<ProviderError>;
  private async translate(error: unknown, what: string, request?: ChatRequest): Promise<ProviderError | RateLimited> {
    const { APIError, APIConnectionError, APIConnectionTimeoutError } = await loadOpenAI();
    const where = this.where;
    if (error instanceof APIError && error.status !== undefined) {
      const status = error.status as number;
      if (status === 429) {
        if (request) return new RateLimited(retryAfterMs(error.headers as Headers | undefined));
        return new ProviderError('rate_limited', `${where} is rate limiting requests (HTTP 429 to ${what}); try again later`);
      }
      if (status === 401 || status === 403) {
        const { apiKey, keyVar } = this.settings;
        return new ProviderError(
          'unauthorized',
          apiKey === undefined
            ? `${where} is configured but wants an API key (HTTP ${status}): set ${keyVar}`
            : `${where} is configured but refused the API key (HTTP ${status}): check ${keyVar}`,
        );
      }
      if (status === 404 && request) {
        const known = await this.models();
        return new ProviderError(
          'unknown_model',
          `${this.settings.label} does not know the model '${request.model}' (HTTP 404). Valid models: ${known.models.join(', ') || 'none listed'}`,
        );
      }
      return new ProviderError('provider_error', `${where} answered HTTP ${status} to ${what}: ${error.message}`);
    }
    if (error instanceof APIConnectionTimeoutError) {
      // Only a models listing has the client's own timeout; a chat's deadline is ours.
      return new ProviderError(
        'unreachable',
        `${where} is configured but did not answer ${what} within ${this.config.modelsTimeoutMs} ms (EXAI_WS_MODELS_TIMEOUT_MS)`,
      );
    }
    if (error instanceof APIConnectionError) {
      const cause = rootCause(error);
      // fetch refuses some ports outright (9, 25, 6000...) and says no more than "bad port".
      const why =
        cause instanceof Error && cause.message === 'bad port'
          ? `fetch will not connect to port ${portOf(this.settings.baseUrl)} (a blocked port)`
          : describe(cause);
      return new ProviderError('unreachable', `${where} is configured but could not be reached: ${why}`);
    }
    return new ProviderError('provider_error', `${where} failed (${what}): ${describe(error)}`);
  }

  private openai(): Promise<OpenAI> {
    this.client ??= loadOpenAI().then(
      ({ default: OpenAIClient }) =>
        new OpenAIClient({
          apiKey: this.settings.apiKey ?? 'no-key',
          baseURL: this.settings.baseUrl,
          maxRetries: 0,
          timeout: this.config.timeoutMs,
        }),
    );
    return this.client;
  }
}

/** The state a failure leaves the provider in; undefined: it says nothing about the provider. */
const STATE_OF: Partial<Record<ProviderErrorKind, ProviderState>> = {
  unauthorized: 'unauthorized',
  unreachable: 'unreachable',
  rate_limited: 'rate_limited',
  timeout: 'error',
  provider_error: 'error',
  // The provider answered and took the key: the model name was wrong, not the provider.
  unknown_model: 'ok',
};

/** Internal: one attempt was answered 429. */
class RateLimited extends Error {
  readonly code = 'EPROVIDER_RETRY' satisfies LocalErrorCode;
  constructor(readonly retryAfterMs: number | undefined) {
    super('rate limited');
  }
}

/** Reads `retry-after-ms`, else `retry-after` (seconds or an HTTP date); undefined when absent or unreadable. */
function retryAfterMs(headers: Headers | undefined): number | undefined {
  const ms = headers?.get('retry-after-ms');
  if (ms && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const value = headers?.get('retry-after');
  if (!value) return undefined;
  if (Number.isFinite(Number(value))) return Math.max(0, Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ProviderError('cancelled', 'the chat was cancelled'));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new ProviderError('cancelled', 'the chat was cancelled'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}

function portOf(url: string | undefined): string {
  try {
    const parsed = new URL(url ?? '');
    return parsed.port || (parsed.protocol === 'https:' ? '443' : '80');
  } catch {
    return '?';
  }
}

/**
 * The innermost cause: the client's "Connection error." wraps fetch's "fetch failed", which
 * wraps what the system said (`connect ECONNREFUSED 127.0.0.1:9`, `getaddrinfo ENOTFOUND`).
 */
function rootCause(error: Error): unknown {
  let at: unknown = error;
  for (let depth = 0; depth < 8 && at instanceof Error && at.cause !== undefined; depth++) at = at.cause;
  // Several causes at once (one per address tried): the first says enough.
  if (at instanceof AggregateError && at.errors[0] instanceof Error) return at.errors[0];
  return at;
}
