/**
 * Which environment variables hold secrets, by name (DECISIONS.md 24): the default patterns,
 * `--redacted-vars` added to them, and the test of a name against them. What is done with the
 * values is `redactor.ts`; this is kept apart so that checking the flag loads nothing more.
 *
 * @module
 */

/**
 * The default name patterns (`*` any run of characters, `?` one; case-insensitive). Buildkite's
 * defaults (`*_PASSWORD`, `*_SECRET`, `*_TOKEN`, `*_PRIVATE_KEY`, `*_SSH_KEY`, `*_ACCESS_KEY`,
 * `*_SECRET_KEY`, `*_CONNECTION_STRING`, `*_API_KEY`), widened to the bare and run-together
 * names people use (`PASSWORD`, `DB_PASSWORD_2`, `PGPASSWORD`, `GITHUB_TOKEN`, `APIKEY`,
 * `AWS_SECRET_ACCESS_KEY`, `AWS_ACCESS_KEY_ID`, `SENTRY_DSN`, `MYSQL_PWD`).
 */
export const DEFAULT_REDACTED_VARS: readonly string[] = Object.freeze([
  "*PASSWORD*",
  "*PASSWD*",
  "*PASSPHRASE*",
  "*SECRET*",
  "*TOKEN",
  "*PRIVATE_KEY",
  "*SSH_KEY",
  "*ACCESS_KEY",
  "*ACCESS_KEY_ID",
  "*API_KEY",
  "*APIKEY",
  "*CONNECTION_STRING",
  "*_DSN",
  "MYSQL_PWD",
]);

const PATTERN_SYNTAX = /^[A-Za-z0-9_*?]+$/;

/**
 * The patterns in effect: the defaults when `given` is `undefined` (no flag, key or variable),
 * none when it is empty (`--redacted-vars ''` switches redaction off), else the defaults plus
 * `given`.
 *
 * @throws {SyntaxError} `'<pattern>' is not a valid pattern (...)` for a pattern with other
 *   characters than letters, digits, `_`, `*` and `?`.
 */
export function redactionPatterns(given: readonly string[] | undefined): readonly string[] {
  if (given === undefined) return DEFAULT_REDACTED_VARS;
  const patterns = given.flatMap((p) => p.split(",")).map((p) => p.trim()).filter((p) => p);
  for (const p of patterns) {
    if (!PATTERN_SYNTAX.test(p)) {
      throw new SyntaxError(
        `'${p}' is not a valid pattern (letters, digits, '_', and the wildcards '*' and '?')`,
      );
    }
  }
  if (patterns.length === 0) return [];
  return [...new Set([...DEFAULT_REDACTED_VARS, ...patterns])];
}

/** A predicate telling whether a variable name matches one of `patterns` (case-insensitive). */
export function nameMatcher(patterns: readonly string[]): (name: string) => boolean {
  if (patterns.length === 0) return () => false;
  const source = patterns.map((p) => p.replaceAll("*", ".*").replaceAll("?", ".")).join("|");
  const regex = new RegExp(`^(?:${source})$`, "i");
  return (name) => regex.test(name);
}
