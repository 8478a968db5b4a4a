/**
 * Every provider the daemon knows, in `auto` order, and how a model name finds its provider.
 * One instance per process: all sessions share its limiters and model caches.
 */
import { Provider, type ModelList } from './provider.js';
import { ProviderError, type ProviderErrorKind } from './provider-error.js';
import type { ProvidersConfig } from './settings.js';
import type { ProviderStatsLine } from './stats.js';
import type { ContactReport, ProviderHealth } from '../../local/health.js';

export const AUTO_MODEL = 'auto';

export interface ProviderListing {
  id: string;
  name: string;
  configured: boolean;
  /** How to make it available, when it is not. */
  setup?: string;
  default_model: string | null;
  models_source: ModelList['source'];
  models_error?: string;
  models: { id: string; default: boolean }[];
  /** What the last contact said (the listing just made, unless it was cached). */
  state: ContactReport['state'];
}

export class Providers {
  readonly all: readonly Provider[];

  constructor(config: ProvidersConfig) {
    this.all = config.providers.map((settings) => new Provider(settings, config));
  }

  get configured(): Provider[] {
    return this.all.filter((p) => p.settings.configured);
  }

  /** Every provider with its models (live when the provider answers), for `listmodels`. */
  async listing(): Promise<ProviderListing[]> {
    return Promise.all(
      this.all.map(async (p) => {
        const list = await p.models();
        const defaultModel = p.settings.defaultModel ?? list.models[0] ?? null;
        const listing: ProviderListing = {
          id: p.settings.id,
          name: p.settings.label,
          configured: p.settings.configured,
          default_model: defaultModel,
          models_source: list.source,
          models: list.models.map((id) => ({ id, default: id === defaultModel })),
          state: p.lastContact.state,
        };
        if (!p.settings.configured) listing.setup = p.settings.setupHint;
        if (list.error) listing.models_error = list.error;
        return listing;
      }),
    );
  }

  /**
   * Finds the provider for a model name: `auto` is the first configured provider's default.
   * Rejects with {@link ProviderError}: `not_configured` (naming the env var to set) only when
   * no provider is; a configured one that cannot say which models it has gives its own
   * failure (`unreachable`, `unauthorized`, naming its URL or key variable); else
   * `unknown_model` (listing the valid ones).
   */
  async resolve(model: string): Promise<{ provider: Provider; model: string }> {
    const configured = this.configured;
    if (configured.length === 0) {
      const owner = this.all.find((p) => p.settings.catalog.includes(model));
      throw new ProviderError(
        'not_configured',
        owner
          ? `model '${model}' belongs to ${owner.settings.label}, which is not configured: ${owner.settings.setupHint}`
          : `no model provider is configured: ${this.all.map((p) => p.settings.setupHint).join('; or ')}`,
      );
    }
    if (model === AUTO_MODEL) {
      const failures: string[] = [];
      for (const provider of configured) {
        if (provider.settings.defaultModel) return { provider, model: provider.settings.defaultModel };
        const list = await provider.models();
        const chosen = list.models[0];
        if (chosen) return { provider, model: chosen };
        failures.push(
          list.error ??
            `${provider.where} lists no models: set ${provider.settings.id === 'openai' ? 'EXAI_OPENAI_MODELS' : 'its default model'} or name a model`,
        );
      }
      throw failed(`no configured provider has a model for 'auto'`, failures, configured);
    }
    const lists = await Promise.all(configured.map(async (p) => ({ provider: p, list: await p.models() })));
    const hit = lists.find(({ provider, list }) => list.models.includes(model) || provider.settings.defaultModel === model);
    if (hit) return { provider: hit.provider, model };
    const owner = this.all.find((p) => !p.settings.configured && p.settings.catalog.includes(model));
    if (owner) {
      throw new ProviderError(
        'not_configured',
        `model '${model}' belongs to ${owner.settings.label}, which is not configured: ${owner.settings.setupHint}`,
      );
    }
    const valid = lists.flatMap(({ list }) => list.models);
    const failures = lists.flatMap(({ list }) => (list.source === 'catalog' && list.error ? [list.error] : []));
    if (valid.length === 0) throw failed(`model '${model}' was not found`, failures, configured);
    const unknown = `unknown model '${model}'. Valid models: ${valid.join(', ')} (or 'auto')`;
    throw new ProviderError(
      'unknown_model',
      failures.length > 0 ? `${unknown}. Models could not be listed from: ${failures.join('; ')}` : unknown,
    );
  }

  /** For `/health`: what is configured, how busy, what the last contact said; never keys. */
  health(): ProviderHealth[] {
    return this.all.map((p) => ({
      id: p.settings.id,
      label: p.settings.label,
      configured: p.settings.configured,
      base_url: p.settings.baseUrl ?? null,
      default_model: p.settings.defaultModel ?? null,
      max_inflight: p.limiter.max,
      inflight: p.limiter.inflight,
      waiting: p.limiter.waiting,
      calls: p.stats.calls,
      rate_limited: p.stats.rateLimited,
      errors: p.stats.errors,
      ...p.lastContact,
    }));
  }

  /** For the metrics line: per-provider counters and this interval's percentiles. */
  snapshot(): Record<string, ProviderStatsLine> {
    return Object.fromEntries(this.all.map((p) => [p.settings.id, p.stats.snapshot()]));
  }
}

/**
 * The error for a model no configured provider could give: the providers' own failures when
 * there are some (unreachable, refused key: what the user must fix), else `headline`.
 */
function failed(headline: string, failures: readonly string[], configured: readonly Provider[]): ProviderError {
  if (failures.length === 0) return new ProviderError('unknown_model', headline);
  const states = new Set(configured.map((p) => p.lastContact.state));
  const code: ProviderErrorKind = states.has('unauthorized')
    ? 'unauthorized'
    : states.has('unreachable')
      ? 'unreachable'
      : 'provider_error';
  return new ProviderError(code, failures.join('; '));
}
