/**
 * JWT authentication of the hosted server (SEMAPHORE_COMPAT.md §7.2), with `jose`:
 * `Authorization: <any scheme word> <JWT>`, signed with HS256/384/512 using the raw bytes of
 * `--auth-token-secret`; `exp`, `nbf` and `iat` are checked only when present; `alg: none` and
 * every asymmetric algorithm are refused. Failures answer 401 with a JSON-encoded message and a
 * newline, as the original's `json.NewEncoder(w).Encode(message)`.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { compactVerify, decodeProtectedHeader, errors } from "jose";
import { goJsonString } from "../lib/engine/events.ts";

const HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"];

/** Algorithms the original's JWT library knows but refuses for an HMAC secret. */
const OTHER_KNOWN_ALGORITHMS = [
  "none",
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
];

/** The 401 body for a request without `Authorization`. */
export const MISSING_HEADER_MESSAGE = "An authorization header is required";
/** The 401 body for a header that is not `<scheme> <token>`. */
export const INVALID_HEADER_MESSAGE = "Invalid authorization token";

/** Options of {@linkcode jwtAuth}. */
export interface JwtAuthOptions {
  /** The HMAC secret; a string is used as its UTF-8 bytes. */
  readonly secret: string | Uint8Array;
  /** The current time in Unix seconds (tests). @default the system clock */
  readonly now?: () => number;
}

function claimNumber(value: unknown): number | undefined | "invalid" {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) return "invalid";
  return value === 0 ? undefined : Math.trunc(value);
}

/** Checks `exp`, `iat` and `nbf` like golang-jwt's `MapClaims.Valid` (the last failure wins). */
function claimsError(claims: Record<string, unknown>, now: number): string | undefined {
  let message: string | undefined;
  const exp = claimNumber(claims.exp);
  if (exp === "invalid" || (exp !== undefined && !(now < exp))) message = "token is expired";
  const iat = claimNumber(claims.iat);
  if (iat === "invalid" || (iat !== undefined && now < iat)) message = "token used before issued";
  const nbf = claimNumber(claims.nbf);
  if (nbf === "invalid" || (nbf !== undefined && now < nbf)) message = "token is not valid yet";
  return message;
}

/**
 * Verifies one compact JWT.
 *
 * @returns `undefined` for a valid token, else the message the 401 body carries
 */
export async function verifyJwt(
  token: string,
  secret: Uint8Array,
  now: number,
): Promise<string | undefined> {
  if (token.split(".").length !== 3) return "token contains an invalid number of segments";
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch (error) {
    return `token is malformed: ${error instanceof Error ? error.message : String(error)}`;
  }
  if (typeof alg !== "string" || !HMAC_ALGORITHMS.includes(alg)) {
    return typeof alg === "string" && OTHER_KNOWN_ALGORITHMS.includes(alg)
      ? "invalid authorization token"
      : "signing method (alg) is unavailable";
  }
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(token, secret, { algorithms: HMAC_ALGORITHMS }));
  } catch (error) {
    if (error instanceof errors.JWSSignatureVerificationFailed) return "signature is invalid";
    return `token is malformed: ${error instanceof Error ? error.message : String(error)}`;
  }
  let claims: unknown;
  try {
    claims = JSON.parse(new TextDecoder().decode(payload));
  } catch (error) {
    return `token is malformed: ${error instanceof Error ? error.message : String(error)}`;
  }
  if (typeof claims !== "object" || claims === null || Array.isArray(claims)) {
    return "token is malformed: the claims are not a JSON object";
  }
  return claimsError(claims as Record<string, unknown>, now);
}

/**
 * Checks an `Authorization` header value.
 *
 * @returns `undefined` when the request may pass, else the message of the 401 answer
 */
export async function checkAuthorization(
  header: string | null | undefined,
  secret: Uint8Array,
  now: number,
): Promise<string | undefined> {
  if (!header) return MISSING_HEADER_MESSAGE;
  const parts = header.split(" ");
  if (parts.length !== 2) return INVALID_HEADER_MESSAGE;
  return await verifyJwt(parts[1], secret, now);
}

/** The 401 answer carrying `message` as the original writes it. */
export function unauthorized(message: string): Response {
  return new Response(`${goJsonString(message)}\n`, {
    status: 401,
    headers: {
      "Content-Type": "text/plain; charset=utf-8",
      "WWW-Authenticate": 'Bearer realm="agent"',
    },
  });
}

/**
 * Creates the middleware that lets a request through only with a valid JWT.
 *
 * @throws {RangeError} if the secret is empty (the server must not start then)
 */
export function jwtAuth(options: JwtAuthOptions): MiddlewareHandler {
  const { secret, now = () => Math.floor(Date.now() / 1000) } = options;
  const key = typeof secret === "string" ? new TextEncoder().encode(secret) : secret.slice();
  if (key.length === 0) throw new RangeError("Cannot check JWTs: the auth token secret is empty");
  return async function jwtAuthMiddleware(c, next) {
    const message = await checkAuthorization(c.req.header("Authorization"), key, now());
    if (message !== undefined) return unauthorized(message);
    await next();
  };
}
