/**
 * The built-in AI tools: `listmodels` and `chat`. They run in the daemon, so every session's
 * calls share one set of provider limits. Provider failures are tool results with
 * `isError: true` and a text that says what to do, never protocol errors.
 */
import type { CallToolResult, McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { ProviderError } from './providers/provider-error.js';
import { AUTO_MODEL, type Providers } from './providers/providers.js';

/** Least time between two progress notifications of one streamed answer. */
export const PROGRESS_INTERVAL_MS = 100;

/** Registers `listmodels` and `chat` on the built-in server; both read `providers`, shared by every session. */
export function registerAiTools(server: McpServer, providers: Providers): void {
  registerListModels(server, providers);
  registerChat(server, providers);
}

function registerListModels(server: McpServer, providers: Providers): void {
  server.registerTool(
    'listmodels',
    {
      title: 'List models',
      description:
        'List every known model grouped by provider (Kimi, GLM, OpenAI-compatible), which providers are configured, and each default model.',
      inputSchema: {},
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    async (): Promise<CallToolResult> => {
      const listing = await providers.listing();
      const lines: string[] = [];
      for (const p of listing) {
        const state = p.configured ? 'configured' : `not configured (${p.setup})`;
        const source = p.models_source === 'live' ? 'the provider' : p.id === 'openai' ? 'EXAI_OPENAI_MODELS' : 'the built-in catalog';
        lines.push(`${p.name} [${p.id}]: ${state}; models from ${source}`);
        // A configured provider that did not answer says so, with what to check.
        if (p.configured && p.models_error) lines.push(`  ! ${p.models_error}`);
        for (const m of p.models) lines.push(`  - ${m.id}${m.default ? ' (default)' : ''}`);
        if (p.models.length === 0) lines.push('  (no models known)');
      }
      const auto = listing.find((p) => p.configured && p.default_model);
      const configured = listing.some((p) => p.configured);
      lines.push(
        auto
          ? `model 'auto' is ${auto.default_model} (${auto.id})`
          : configured
            ? `model 'auto': no configured provider has a model (see above)`
            : `model 'auto': no provider is configured`,
      );
      return {
        content: [{ type: 'text', text: lines.join('\n') }],
        structuredContent: { providers: listing, auto: auto ? { provider: auto.id, model: auto.default_model } : null },
      };
    },
  );
}

function registerChat(server: McpServer, providers: Providers): void {
  server.registerTool(
    'chat',
    {
      title: 'Chat',
      description:
        "Ask a model (Kimi, GLM or an OpenAI-compatible endpoint) and get its answer. model 'auto' uses the first configured provider's default. The answer streams as progress notifications when the client asks for progress.",
      inputSchema: {
        prompt: z.string().min(1).describe('What to ask'),
        model: z.string().min(1).default(AUTO_MODEL).describe("Model id from listmodels, or 'auto'"),
        system_prompt: z.string().optional(),
        temperature: z.number().min(0).max(2).optional(),
        max_tokens: z.number().int().min(1).optional(),
      },
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    async (args, ctx): Promise<CallToolResult> => {
      const { signal } = ctx.mcpReq;
      const token = ctx.mcpReq._meta?.progressToken;
      let unsent = '';
      let lastSentMs = 0;
      let chars = 0;
      const flush = () => {
        if (token === undefined || unsent.length === 0 || signal.aborted) return;
        const message = unsent;
        unsent = '';
        lastSentMs = Date.now();
        ctx.mcpReq
          .notify({ method: 'notifications/progress', params: { progressToken: token, progress: chars, message } })
          .catch(() => undefined);
      };
      try {
        const { provider, model } = await providers.resolve(args.model);
        const result = await provider.chat(
          { model, prompt: args.prompt, systemPrompt: args.system_prompt, temperature: args.temperature, maxTokens: args.max_tokens },
          {
            signal,
            onText: (delta, soFar) => {
              chars = soFar.length;
              unsent += delta;
              if (Date.now() - lastSentMs >= PROGRESS_INTERVAL_MS) flush();
            },
          },
        );
        if (unsent.length > 0) {
          flush();
          // Let the last piece leave in a write of its own: SDK 1.x clients drop a progress
          // notification they read in one chunk with its result (typescript-sdk#2580).
          await new Promise((resolve) => setImmediate(resolve));
        }
        return {
          content: [{ type: 'text', text: result.text }],
          _meta: {
            'exai-ws/provider': provider.id,
            'exai-ws/model': result.model,
            'exai-ws/finish_reason': result.finishReason,
            'exai-ws/usage': result.usage,
            'exai-ws/attempts': result.attempts,
          },
        };
      } catch (error) {
        const text =
          error instanceof ProviderError ? error.message : `chat failed: ${error instanceof Error ? error.message : String(error)}`;
        return { isError: true, content: [{ type: 'text', text }] };
      }
    },
  );
}
