/**
 * For a route that only answers GET and HEAD (/health, /ready, /metrics): any other method is answered 405 with
 * `Allow` (such requests used to get the same 200 as a GET). True when it answered, so the route stops there.
 * An OPTIONS never gets here while CORS_ORIGINS is set: Yoga's CORS plugin answers it first, as a preflight (204).
 */
export function refusedUnlessGetOrHead(request: Request, endResponse: (response: Response) => void, fetchAPI: { Response: typeof Response }): boolean {
  if (request.method === 'GET' || request.method === 'HEAD') return false;
  endResponse(new fetchAPI.Response(null, { status: 405, headers: { allow: 'GET, HEAD' } }));
  return true;
}
