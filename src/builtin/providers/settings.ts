/**
 * Provider settings: Kimi (Moonshot), GLM (Zhipu / Z.ai) and any OpenAI-compatible endpoint,
 * read once from the environment, validated with zod and frozen. A provider without a key (or,
 * for the generic one, without a base URL) is simply not configured; nothing fails at start.
 */
import { z } from 'zod';

export type ProviderId = 'kimi' | 'glm' | 'openai';

export const DEFAULT_KIMI_URL = 'https://api.moonshot.ai/v1';
export const DEFAULT_GLM_URL = 'https://api.z.ai/api/paas/v4';
export const DEFAULT_KIMI_MAX_INFLIGHT = 6;
export const DEFAULT_GLM_MAX_INFLIGHT = 4;
export const DEFAULT_OPENAI_MAX_INFLIGHT = 4;
export const DEFAULT_PROVIDER_TIMEOUT_MS = 120_000;
export const DEFAULT_PROVIDER_MAX_ATTEMPTS = 4;
export const DEFAULT_PROVIDER_RETRY_BUDGET_MS = 60_000;
export const DEFAULT_MODELS_TIMEOUT_MS = 3_000;
export const DEFAULT_MODELS_TTL_MS = 10 * 60_000;

/** The built-in catalog, shown even when a provider's `/models` does not answer. */
export const CATALOG: Readonly<Record<ProviderId, readonly string[]>> = Object.freeze({
  kimi: [
    'kimi-k2-0905-preview',
    'kimi-k2-0711-preview',
    'kimi-k2-turbo-preview',
    'kimi-k2-thinking',
    'kimi-k2-thinking-turbo',
    'moonshot-v1-8k',
    'moonshot-v1-32k',
    'moonshot-v1-128k',
  ],
  glm: ['glm-4.5', 'glm-4.5-air', 'glm-4.5-x', 'glm-4.5-airx', 'glm-4.5-flash'],
  openai: [],
});

const BUILTIN_DEFAULT_MODEL: Readonly<Record<ProviderId, string | undefined>> = Object.freeze({
  kimi: 'kimi-k2-0905-preview',
  glm: 'glm-4.5',
  openai: undefined,
});

export interface ProviderSettings {
  readonly id: ProviderId;
  readonly label: string;
  readonly baseUrl: string | undefined;
  /** The variable that sets the base URL, and whether the user set it (else the default is used). */
  readonly urlVar: string;
  readonly urlFromEnv: boolean;
  readonly apiKey: string | undefined;
  /** The variable the key came from (the first one read when none is set), for error texts. */
  readonly keyVar: string;
  /** True when the provider can be called (key set; for `openai`, a base URL set). */
  readonly configured: boolean;
  /** What the user must set to make it available, for error texts. */
  readonly setupHint: string;
  readonly defaultModel: string | undefined;
  /** The built-in or configured model list. */
  readonly catalog: readonly string[];
  /** Calls in flight at once, shared by every session. */
  readonly maxInflight: number;
}

export interface ProvidersConfig {
  /** In the order `auto` tries them. */
  readonly providers: readonly ProviderSettings[];
  /** Deadline of one provider request attempt, in milliseconds. */
  readonly timeoutMs: number;
  /** Attempts per call when the provider answers 429. */
  readonly maxAttempts: number;
  /** Longest total time spent waiting on 429 retries, in milliseconds. */
  readonly retryBudgetMs: number;
  /** Deadline of a `/models` refresh, in milliseconds. */
  readonly modelsTimeoutMs: number;
  /** How long a `/models` answer is reused, in milliseconds. */
  readonly modelsTtlMs: number;
}

const int = (min: number) => z.coerce.number().int().min(min);
const url = z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' });

const ProviderEnv = z.object({
  KIMI_API_KEY: z.string().optional(),
  MOONSHOT_API_KEY: z.string().optional(),
  // Optional here, defaulted below: error texts say whether the user set it.
  KIMI_API_URL: url.optional(),
  KIMI_DEFAULT_MODEL: z.string().optional(),
  GLM_API_KEY: z.string().optional(),
  ZHIPUAI_API_KEY: z.string().optional(),
  GLM_API_URL: url.optional(),
  GLM_DEFAULT_MODEL: z.string().optional(),
  EXAI_OPENAI_BASE_URL: url.optional(),
  EXAI_OPENAI_API_KEY: z.string().optional(),
  EXAI_OPENAI_MODELS: z.string().optional(),
  EXAI_WS_KIMI_MAX_INFLIGHT: int(1).default(DEFAULT_KIMI_MAX_INFLIGHT),
  EXAI_WS_GLM_MAX_INFLIGHT: int(1).default(DEFAULT_GLM_MAX_INFLIGHT),
  EXAI_WS_OPENAI_MAX_INFLIGHT: int(1).default(DEFAULT_OPENAI_MAX_INFLIGHT),
  EXAI_WS_PROVIDER_TIMEOUT_MS: int(1).default(DEFAULT_PROVIDER_TIMEOUT_MS),
  EXAI_WS_PROVIDER_MAX_ATTEMPTS: int(1).default(DEFAULT_PROVIDER_MAX_ATTEMPTS),
  EXAI_WS_PROVIDER_RETRY_BUDGET_MS: int(0).default(DEFAULT_PROVIDER_RETRY_BUDGET_MS),
  EXAI_WS_MODELS_TIMEOUT_MS: int(1).default(DEFAULT_MODELS_TIMEOUT_MS),
  EXAI_WS_MODELS_TTL_MS: int(0).default(DEFAULT_MODELS_TTL_MS),
});

/** The zod shape, so the daemon's one config parse can include it. */
export const ProviderEnvSchema = ProviderEnv;
export type ProviderEnvValues = z.infer<typeof ProviderEnv>;

/** Builds the frozen provider configuration from already-validated environment values. */
export function providersFromEnv(e: ProviderEnvValues): ProvidersConfig {
  const list = (s: string | undefined) =>
    (s ?? '')
      .split(',')
      .map((m) => m.trim())
      .filter((m) => m.length > 0);
  const kimiKey = e.KIMI_API_KEY ?? e.MOONSHOT_API_KEY;
  const glmKey = e.GLM_API_KEY ?? e.ZHIPUAI_API_KEY;
  const openaiModels = list(e.EXAI_OPENAI_MODELS);
  const providers: ProviderSettings[] = [
    {
      id: 'kimi',
      label: 'Kimi (Moonshot)',
      baseUrl: e.KIMI_API_URL ?? DEFAULT_KIMI_URL,
      urlVar: 'KIMI_API_URL',
      urlFromEnv: e.KIMI_API_URL !== undefined,
      apiKey: kimiKey,
      keyVar: e.KIMI_API_KEY === undefined && e.MOONSHOT_API_KEY !== undefined ? 'MOONSHOT_API_KEY' : 'KIMI_API_KEY',
      configured: kimiKey !== undefined,
      setupHint: 'set KIMI_API_KEY (or MOONSHOT_API_KEY)',
      defaultModel: e.KIMI_DEFAULT_MODEL ?? BUILTIN_DEFAULT_MODEL.kimi,
      catalog: CATALOG.kimi,
      maxInflight: e.EXAI_WS_KIMI_MAX_INFLIGHT,
    },
    {
      id: 'glm',
      label: 'GLM (Zhipu / Z.ai)',
      baseUrl: e.GLM_API_URL ?? DEFAULT_GLM_URL,
      urlVar: 'GLM_API_URL',
      urlFromEnv: e.GLM_API_URL !== undefined,
      apiKey: glmKey,
      keyVar: e.GLM_API_KEY === undefined && e.ZHIPUAI_API_KEY !== undefined ? 'ZHIPUAI_API_KEY' : 'GLM_API_KEY',
      configured: glmKey !== undefined,
      setupHint: 'set GLM_API_KEY (or ZHIPUAI_API_KEY)',
      defaultModel: e.GLM_DEFAULT_MODEL ?? BUILTIN_DEFAULT_MODEL.glm,
      catalog: CATALOG.glm,
      maxInflight: e.EXAI_WS_GLM_MAX_INFLIGHT,
    },
    {
      id: 'openai',
      label: 'OpenAI-compatible',
      baseUrl: e.EXAI_OPENAI_BASE_URL,
      urlVar: 'EXAI_OPENAI_BASE_URL',
      urlFromEnv: e.EXAI_OPENAI_BASE_URL !== undefined,
      apiKey: e.EXAI_OPENAI_API_KEY,
      keyVar: 'EXAI_OPENAI_API_KEY',
      configured: e.EXAI_OPENAI_BASE_URL !== undefined,
      setupHint: 'set EXAI_OPENAI_BASE_URL (and EXAI_OPENAI_API_KEY, EXAI_OPENAI_MODELS if needed)',
      defaultModel: openaiModels[0],
      catalog: openaiModels,
      maxInflight: e.EXAI_WS_OPENAI_MAX_INFLIGHT,
    },
  ];
  return Object.freeze({
    providers: Object.freeze(providers.map((p) => Object.freeze(p))),
    timeoutMs: e.EXAI_WS_PROVIDER_TIMEOUT_MS,
    maxAttempts: e.EXAI_WS_PROVIDER_MAX_ATTEMPTS,
    retryBudgetMs: e.EXAI_WS_PROVIDER_RETRY_BUDGET_MS,
    modelsTimeoutMs: e.EXAI_WS_MODELS_TIMEOUT_MS,
    modelsTtlMs: e.EXAI_WS_MODELS_TTL_MS,
  });
}
