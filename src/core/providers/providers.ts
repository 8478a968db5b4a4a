/**
 * Every provider the daemon knows, in `auto` order, and how a model name finds its provider.
 * One instance per process: all sessions share its limiters and model caches.
 */
import { Provider, ProviderError, type ModelList } from './provider.js';
import type { ProvidersConfig } from './settings.js';
import type { ProviderStatsLine } from './stats.js';

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
        };
        if (!p.settings.configured) listing.setup = p.settings.setupHint;
        if (list.error) listing.models_error = list.error;
        return listing;
      }),
    );
  }

  /**
   * Finds the provider for a model name: `auto` is the first configured provider's default.
   * Rejects with {@link ProviderError}: `not_configured` (naming the env var to set) or
   * `unknown_model` (listing the valid ones).
   */
  async resolve(model: string): Promise<{ provider: Provider; model: string }> {
    const configured = this.configured;
    if (model === AUTO_MODEL) {
      for (const provider of configured) {
        const chosen = provider.settings.defaultModel ?? (await provider.models()).models[0];
        if (chosen) return { provider, model: chosen };
      }
      throw new ProviderError(
        'not_configured',
        `no model provider is configured: ${this.all.map((p) => p.settings.setupHint).join('; or ')}`,
      );
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
    if (valid.length === 0) {
      throw new ProviderError(
        'not_configured',
        `no model provider is configured: ${this.all.map((p) => p.settings.setupHint).join('; or ')}`,
      );
    }
    throw new ProviderError('unknown_model', `unknown model '${model}'. Valid models: ${valid.join(', ')} (or 'auto')`);
  }

  /** For `/health`: what is configured and how busy, never keys. */
  health(): Record<string, unknown>[] {
    return this.all.map((p) => ({
      id: p.settings.id,
      configured: p.settings.configured,
      base_url: p.settings.baseUrl ?? null,
      default_model: p.settings.defaultModel ?? null,
      max_inflight: p.limiter.max,
      inflight: p.limiter.inflight,
      waiting: p.limiter.waiting,
    }));
  }

  /** For the metrics line: per-provider counters and this interval's percentiles. */
  snapshot(): Record<string, ProviderStatsLine> {
    return Object.fromEntries(this.all.map((p) => [p.settings.id, p.stats.snapshot()]));
  }
}
