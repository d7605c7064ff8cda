/**
 * The agent's version, taken from `deno.json` so there is one place to change it.
 *
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };

/** The version string the agent reports: `v<deno.json version>`. */
export const VERSION = `v${denoJson.version}`;

/** The `User-Agent` header of every outbound request (SEMAPHORE_COMPAT.md §2.3). */
export const USER_AGENT = `SemaphoreAgent/${VERSION}`;
