import type { LocalErrorCode } from '../../local/errors.js';

/** What went wrong with a provider (never on the wire: chat turns it into an `isError` tool result). */
export type ProviderErrorKind =
  'not_configured' | 'unauthorized' | 'rate_limited' | 'timeout' | 'cancelled' | 'unknown_model' | 'unreachable' | 'provider_error';

/** The local error code (local/errors.ts) of each kind. */
export const PROVIDER_ERROR_CODES = Object.freeze({
  not_configured: 'EPROVIDER_NOT_CONFIGURED',
  unauthorized: 'EPROVIDER_UNAUTHORIZED',
  rate_limited: 'EPROVIDER_RATE_LIMITED',
  timeout: 'EPROVIDER_TIMEOUT',
  cancelled: 'EPROVIDER_CANCELLED',
  unknown_model: 'EPROVIDER_UNKNOWN_MODEL',
  unreachable: 'EPROVIDER_UNREACHABLE',
  provider_error: 'EPROVIDER_ERROR',
} as const satisfies Record<ProviderErrorKind, LocalErrorCode>);

export class ProviderError extends Error {
  override name = 'ProviderError';
  readonly code: (typeof PROVIDER_ERROR_CODES)[ProviderErrorKind];
  constructor(
    readonly kind: ProviderErrorKind,
    message: string,
  ) {
    super(message);
    this.code = PROVIDER_ERROR_CODES[kind];
  }
}
