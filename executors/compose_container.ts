/**
 * One compose container (SEMAPHORE_COMPAT.md §10.2) as the Docker Engine API creates it: image,
 * user, entrypoint and command split into words as compose splits them, and the environment
 * decoded from base64. Networking, mounts and TTY are the executor's (`docker.ts`).
 *
 * @module
 */

import type { Container } from "../lib/engine/job_request_types.ts";
import { decodeBase64Text } from "../lib/util/base64.ts";
import type { ContainerConfig } from "./docker_api.ts";

/** Image, user, entrypoint, command and environment of a container, as compose maps them. */
export function composeContainerConfig(container: Container): ContainerConfig {
  const env = container.env_vars.map((v) => {
    let value = "";
    try {
      value = decodeBase64Text(v.value);
    } catch {
      value = ""; // the original silently uses an empty value (§4.3)
    }
    return `${v.name}=${value}`;
  });
  return {
    Image: container.image,
    ...(container.user ? { User: container.user } : {}),
    ...(container.entrypoint ? { Entrypoint: splitShellWords(container.entrypoint) } : {}),
    ...(container.command ? { Cmd: splitShellWords(container.command) } : {}),
    Env: env,
  };
}

/**
 * Splits a compose `command`/`entrypoint` string into words as compose does: blanks separate,
 * single quotes are literal, double quotes and backslashes escape.
 */
export function splitShellWords(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === "\\" && i + 1 < text.length && '"\\$`'.includes(text[i + 1])) {
        word += text[++i];
      } else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}
