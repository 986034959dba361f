/**
 * Credentials that travel in URLs, found by their shape wherever they appear in a log line: signed
 * tokens (artifact download and stream tokens are JWTs), the token segment of `/artifacts/{token}/…`,
 * credential-named query parameters, URL user-info, API keys (`lh_…`) and webhook secrets (`whsec_…`).
 * The logger passes every line through it, so a URL logged anywhere (a request path, an error message
 * quoting a callback URL) cannot carry one out.
 */
const PATTERNS: ReadonlyArray<[RegExp, string]> = [
  [/eyJ[\w-]*\.[\w-]*\.[\w-]+/g, '[redacted]'],
  [/(\/artifacts\/)[^/\s"?#]+(?=\/)/g, '$1[redacted]'],
  [
    /([?&](?:token|access_token|id_token|api_key|apikey|key|secret|client_secret|password|signature|sig|auth)=)[^&\s"#]*/gi,
    '$1[redacted]',
  ],
  [/(\/\/)[^/\s"@]+@/g, '$1[redacted]@'],
  [/\blh_[\w-]{16,}/g, '[redacted]'],
  [/\bwhsec_[\w+/=]{16,}/g, '[redacted]'],
];

/** `text` with every credential the patterns know replaced by `[redacted]`. */
export function redactSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out;
}
