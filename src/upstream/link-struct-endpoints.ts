import type { CreatorPlatform, LinkStructureRequest } from '../link-structure/model.js';
import type { UpstreamError } from './upstream-error.js';

/**
 * The two Just One API endpoints that answer a creator's link structure, with the same payload:
 * `v1` (get-kol-link-struct/v1, deprecated: "may be removed in future versions") and `gw`, its
 * replacement, a pass-through of Xingtu's own `data_sp/author_link_struct` call.
 */
export const upstreamEndpoints = ['v1', 'gw'] as const;
export type UpstreamEndpoint = (typeof upstreamEndpoints)[number];

export function isUpstreamEndpoint(value: string): value is UpstreamEndpoint {
  return (upstreamEndpoints as readonly string[]).includes(value);
}

/** JUSTONEAPI_LINK_ENDPOINT: a fixed endpoint, or `auto` (v1 until it is gone, then gw for good). */
export const linkEndpointModes = ['v1', 'gw', 'auto'] as const;
export type LinkEndpointMode = (typeof linkEndpointModes)[number];

export interface EndpointSpec {
  path: string;
  /** The query string without the token (added by the client, and never logged). */
  params(request: LinkStructureRequest): Record<string, string>;
  /** Whether this endpoint can answer for the platform at all. */
  supports(platform: CreatorPlatform): boolean;
  /** Whether it takes `acceptCache`: where it does not, requests that differ only in it are the same request. */
  takesAcceptCache: boolean;
}

// The gw endpoint's `platform` values; the same words as ours today, mapped so a rename upstream stays here.
const gwPlatforms: Record<CreatorPlatform, string> = {
  SHORT_VIDEO: 'SHORT_VIDEO',
  LIVE_STREAMING: 'LIVE_STREAMING',
  PICTURE_TEXT: 'PICTURE_TEXT',
  SHORT_DRAMA: 'SHORT_DRAMA',
};

export const endpointSpecs: Record<UpstreamEndpoint, EndpointSpec> = {
  v1: {
    path: '/api/douyin-xingtu/get-kol-link-struct/v1',
    params: (request) => ({ kolId: request.kolId, acceptCache: String(request.acceptCache) }),
    // v1 has no platform parameter: it answers the short-video link structure only.
    supports: (platform) => platform === 'SHORT_VIDEO',
    takesAcceptCache: true,
  },
  gw: {
    path: '/api/douyin-xingtu/gw/api/data_sp/author_link_struct/v1',
    // The kolId is Xingtu's author id; gw has no acceptCache parameter, so it is not sent.
    params: (request) => ({ oAuthorId: request.kolId, platform: gwPlatforms[request.platform] }),
    supports: () => true,
    takesAcceptCache: false,
  },
};

/**
 * Why a v1 failure means v1 has been removed rather than failed this once: business code 300
 * ("API Invalid"), or HTTP 404/410 for the path. Undefined for any other failure.
 */
export function v1GoneReason(failure: UpstreamError): string | undefined {
  if (failure.businessCode === 300) return 'business code 300 (API invalid)';
  if (failure.httpStatus === 404 || failure.httpStatus === 410) return `HTTP ${failure.httpStatus}`;
  return undefined;
}
