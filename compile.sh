#!/usr/bin/env bash
# Builds dist/agent, one executable file (DECISIONS.md "Runtime and dependencies").
#
# Three ways, tried in this order:
#   1. DENORT_BIN is set: `deno compile` with that local denort runtime (Deno itself reads the
#      variable). The result is a real single-file Deno executable.
#   2. Plain `deno compile`, which works only where Deno can fetch (or has cached) its denort
#      runtime. Skipped with AGENT_COMPILE_FALLBACK=1; bounded by a timeout.
#   3. The fallback: a self-extracting executable, a POSIX sh header followed by a tar.gz of the
#      installed `deno` binary and a `deno bundle` of the agent (npm dependencies inlined). On
#      first run it unpacks once into ${XDG_CACHE_HOME:-$HOME/.cache}/semaphore-agent/
#      (runtime-<hash>/ and agent-<hash>/, each by temp dir + rename, so concurrent first runs
#      are safe; rebuilds of the agent share the runtime directory) and then execs
#      `deno run -A ... main.js "$@"`: same CLI, exit codes, stdin/stdout and signals.
#
# Start-up time (the fallback's choices; `deno compile` loads its module graph lazily by itself):
#   - Each command loads only its own code: main.ts reads `version` and plain `run` command lines
#     without commander and loads every mode (and commander) with `import()`. The bundle keeps
#     that: `--code-splitting` makes each `import()` target a chunk of its own (main.js is 10 kB;
#     `run` adds the engine and executors, ~400 kB; serve's Hono and jose and start's client stay
#     in chunks that `run` never reads). A single-file bundle would keep the `import()`s lazy too
#     (esbuild wraps each module in an init function), but V8 would still parse all 750 kB and
#     every `node:` import of every mode is hoisted to its top and evaluated at start.
#   - Chunks are imported by URL (`import(new URL("./chunk.js", import.meta.url).href)`): Deno
#     reads and analyses every string-literal import() target before the entry runs (it builds
#     the whole module graph), which cost `version` and `run` ~5 ms for chunks they never load.
#     A chunk is then read when it is imported, from the same unpacked directory.
#   - No `node:` module on the paths of `version` and `run`: the first `node:` import starts
#     Deno's Node compatibility layer, 30-50 ms before anything runs. Commander needs it (loaded
#     lazily, see above); `yaml`'s Node build needs it (createRequire, node:process, node:buffer),
#     so the bundle is made with `--platform browser`, which picks yaml's ESM build (`browser`
#     condition); hono, jose and commander bundle to the same code either way. One difference
#     needs a patch: for a CommonJS package that requires a Node builtin (prom-client, loaded
#     only with --metrics-addr), esbuild's browser shim throws "Dynamic require ... is not
#     supported"; the patch lets it take the builtin from `process.getBuiltinModule()` instead
#     (with `--platform deno` the shim would `import "node:module"` in the chunk that every
#     command loads: +40 ms for `version`). tests/compile_test.ts checks that no chunk `version`
#     or `run` loads imports `node:`, hono, jose or the self-hosted client, and that the metrics
#     endpoint works.
#   - Not in the bundle but in the code, for `agent run` of a job file:
#     - the job's shell is started as soon as the file is read, with only the shell's code
#       loaded (executors/shell_ahead.ts); its handshake is in the pipe before anything else
#       holds the thread, and the YAML parser, the job engine and the executors load while it
#       logs in (lib/run/deferred.ts, one import());
#     - the file-system calls on the way to that shell are synchronous (each async one is a
#       thread-pool round trip, ~0.3 ms here);
#     - no setTimeout: in Deno 2.9 it is Node's, and its first call loads two dozen modules of
#       Deno's Node layer (12-25 ms); the agent's timers run on AbortSignal.timeout
#       (lib/util/delay.ts), and tests/compile_test.ts checks with DENO_LOG=debug that `agent
#       run` of a job loads no `node:` or `ext:deno_node` module.
#   - Deno's caches: `deno run` keeps the V8 code cache and the dependency analysis of each
#     module it loads in DENO_DIR (by default ${XDG_CACHE_HOME:-$HOME/.cache}/deno), which the
#     launcher leaves alone: setting DENO_DIR would reach every job's environment. The first run
#     of a build fills them (~15 MiB more at its peak, ~0.1 s); where that directory cannot be
#     written, every run pays that.
#
# Memory (both ways run V8 with the flags in $v8_flags below): peak RSS of `agent run` while a
# job prints 100 MB was 66-72 MiB, of which 38 MiB file-backed (the deno binary's code pages in
# use) and 22-33 MiB anonymous. With the flags it is ~48 MiB, the same for 10 MB and 1 GB:
#   - `--no-opt --no-maglev`: no optimizing compiler. The agent's work per output chunk is done
#     by Deno's native code (decode, encode, write); compiling its few hot JS functions touched
#     ~6 MiB more of the binary's code and ~4 MiB of compiler memory for no measurable gain
#     (same CPU for text output and for 1000 commands). The cost: output that is mostly
#     invalid UTF-8 (binary garbage) takes about a third more CPU in the per-byte decoder.
#   - `--max-semi-space-size=1` (MiB): V8's young generation stays small (default up to 16);
#     the output path's garbage is short-lived, so more frequent scavenges cost nothing visible.
# The rest is in the agent's own code (lib/engine/shell_session.ts reads the terminal into one
# reused buffer; lib/run/local_run.ts encodes into one reused buffer): each chunk read used to
# be a new 64 KiB buffer, freed only when V8 got round to it, ~10 MiB of malloc heap at a time.
#
# Each way is smoke-tested (`dist/agent version` must print `v<deno.json version>`) before the
# script reports success.
#
# Environment: DENORT_BIN (path to denort), AGENT_COMPILE_FALLBACK=1 (go straight to 3),
# AGENT_COMPILE_TIMEOUT (seconds for way 2, default 60).
set -euo pipefail

# V8 flags of the built agent (see "Memory" above).
v8_flags="--no-opt,--no-maglev,--max-semi-space-size=1"

cd "$(dirname "${BASH_SOURCE[0]}")"
root=$(pwd)
out="$root/dist/agent"
mkdir -p "$root/dist"

deno_exe=$(command -v deno || true)
if [ -z "$deno_exe" ]; then
  echo "compile.sh: Cannot build dist/agent: deno is not on PATH" >&2
  exit 1
fi
deno_exe=$(readlink -f "$deno_exe")
deno_version=$("$deno_exe" --version | head -n 1 | awk '{print $2}')

# The agent's version and the `unstable` features from deno.json: the fallback runs the bundle
# with --no-config, so the features become flags.
read -r agent_version unstable_flags < <(
  "$deno_exe" eval --no-config '
    const c = JSON.parse(Deno.readTextFileSync("deno.json"));
    const flags = (c.unstable ?? []).map((f) => `--unstable-${f}`).join(" ");
    console.log(`v${c.version} ${flags}`);
  '
)

# Runs the built binary's `version` and checks it. stdin is /dev/null so that a wrong runtime
# (e.g. a plain deno binary given as DENORT_BIN starts a REPL) ends at once.
smoke_test() {
  local got
  got=$(timeout 60 "$out" version </dev/null 2>&1) || true
  if [ "$got" != "$agent_version" ]; then
    echo "compile.sh: Cannot use the built dist/agent: 'dist/agent version' printed '${got:0:200}', expected '$agent_version'" >&2
    return 1
  fi
}

human_size() {
  local bytes
  bytes=$(stat -c %s "$1")
  awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }'
}

# Way 1 and 2: deno compile. The compiled binary needs no config at run time; the build uses the
# repository's deno.json for the import map and deno.lock for the pins.
deno_compile() { # $1: timeout in seconds
  rm -f "$out"
  timeout "$1" "$deno_exe" compile -A --quiet "--v8-flags=$v8_flags" --output "$out" main.ts
}

if [ -n "${DENORT_BIN:-}" ]; then
  if [ ! -x "$DENORT_BIN" ]; then
    echo "compile.sh: Cannot build with DENORT_BIN: '$DENORT_BIN' is not an executable file" >&2
    exit 1
  fi
  echo "compile.sh: building dist/agent with deno compile and DENORT_BIN=$DENORT_BIN"
  export DENORT_BIN
  deno_compile 600
  smoke_test
  echo "compile.sh: built $out ($(human_size "$out"), deno compile $deno_version with local denort, agent $agent_version)"
  exit 0
fi

if [ "${AGENT_COMPILE_FALLBACK:-0}" != "1" ]; then
  echo "compile.sh: trying deno compile (needs the denort runtime: cached or downloadable)"
  if deno_compile "${AGENT_COMPILE_TIMEOUT:-60}" >"$root/dist/.compile.log" 2>&1 && smoke_test; then
    rm -f "$root/dist/.compile.log"
    echo "compile.sh: built $out ($(human_size "$out"), deno compile $deno_version, agent $agent_version)"
    exit 0
  fi
  reason=$(grep -m1 -o 'dns error\|error: [^.]*' "$root/dist/.compile.log" | head -n 1 || true)
  echo "compile.sh: deno compile is not possible here (${reason:-no denort runtime}); building the self-extracting fallback"
  rm -f "$out" "$root/dist/.compile.log"
fi

# Way 3: the self-extracting fallback.
work=$(mktemp -d "$root/dist/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/payload/app" "$work/payload/runtime"

# main.js and one chunk per import() target (see "Start-up time" above).
"$deno_exe" bundle --quiet --platform browser --code-splitting --outdir "$work/payload/app" main.ts
if [ ! -f "$work/payload/app/main.js" ]; then
  echo "compile.sh: Cannot bundle the agent: deno bundle wrote no main.js" >&2
  exit 1
fi
# esbuild's require shim for the browser platform (see "Start-up time" above): Node builtins
# come from process.getBuiltinModule(), loaded only when a CommonJS package asks for one.
shim_throw="throw Error('Dynamic require of \"' + x + '\" is not supported');"
shim_builtin="const builtin = globalThis.process?.getBuiltinModule?.(x); if (builtin) return builtin;"
for chunk in "$work/payload/app/"*.js; do
  if grep -q "Dynamic require of" "$chunk"; then
    if ! grep -qF "$shim_throw" "$chunk"; then
      echo "compile.sh: Cannot bundle the agent: esbuild's require shim in $(basename "$chunk") has an unknown form" >&2
      exit 1
    fi
    SHIM_THROW="$shim_throw" SHIM_BUILTIN="$shim_builtin" "$deno_exe" eval --no-config '
      const [path] = Deno.args;
      const text = Deno.readTextFileSync(path);
      const from = Deno.env.get("SHIM_THROW");
      Deno.writeTextFileSync(path, text.replace(from, `${Deno.env.get("SHIM_BUILTIN")} ${from}`));
    ' "$chunk"
  fi
done
# Chunks are imported by URL, not by string literal (see "Start-up time" above): Deno reads and
# analyses every literal import() target before main.js runs, ~5 ms for chunks most commands
# never load.
"$deno_exe" eval --no-config '
  const literal = /\bimport\("(\.\/[\w.-]+\.js)"\)/g;
  for (const path of Deno.args) {
    const text = Deno.readTextFileSync(path);
    const rewritten = text.replace(literal, (_, chunk) =>
      `import(new URL("${chunk}", import.meta.url).href)`);
    if (/\bimport\(["\x27`]/.test(rewritten)) {
      console.error(`compile.sh: Cannot bundle the agent: an import() in ${path} has an unknown form`);
      Deno.exit(1);
    }
    if (rewritten !== text) Deno.writeTextFileSync(path, rewritten);
  }
' "$work/payload/app/"*.js
# Every npm package must be inside the bundle: the launcher runs with --no-npm.
npm_import="(from|import)[[:space:]]*\(?[[:space:]]*[\"']npm:"
if grep -Eq "$npm_import" "$work/payload/app/"*.js; then
  echo "compile.sh: Cannot bundle the agent: the bundle still imports npm: specifiers" >&2
  grep -En "$npm_import" "$work/payload/app/"*.js | head -n 5 >&2
  exit 1
fi
cp "$deno_exe" "$work/payload/runtime/deno"
chmod 0755 "$work/payload/runtime/deno"
chmod 0644 "$work/payload/app/"*.js

# Cache directories are named after their content: rebuilding the agent adds only a new app
# directory (the bundle) beside the one shared runtime directory (the ~100 MB deno binary).
runtime_id=$(sha256sum "$work/payload/runtime/deno" | cut -c1-16)
app_files=$(cd "$work/payload" && LC_ALL=C ls app/*.js)
app_id=$( (echo "$runtime_id $unstable_flags $v8_flags" && cd "$work/payload" && for f in $app_files; do
  echo "$f" && cat "$f"
done) | sha256sum | cut -c1-16)
# The app comes first so that a run that needs only the app can stop reading early.
# shellcheck disable=SC2086 # the file names have no spaces
tar -C "$work/payload" --owner=0 --group=0 --numeric-owner --mtime=@0 \
  -cf - $app_files runtime/deno | gzip -6 -n >"$work/payload.tar.gz"
payload_sum=$(sha256sum "$work/payload.tar.gz" | cut -c1-64)

write_header() { # $1: the payload offset, padded to 10 characters
  cat <<EOF
#!/bin/sh
# Semaphore agent $agent_version, built by compile.sh: a self-extracting executable.
# After this header: a tar.gz of the Deno $deno_version runtime and the bundled agent. They are
# unpacked once into \${XDG_CACHE_HOME:-\$HOME/.cache}/semaphore-agent/ and run from there with
# the same arguments, stdin, stdout and signals (exec).
sum=$payload_sum
offset=$1 # byte length of this header
if [ -n "\${XDG_CACHE_HOME:-}" ]; then base=\$XDG_CACHE_HOME/semaphore-agent
elif [ -n "\${HOME:-}" ]; then base=\$HOME/.cache/semaphore-agent
else base=\${TMPDIR:-/tmp}/semaphore-agent-\$(id -u); fi
rt=\$base/runtime-$runtime_id
app=\$base/agent-$app_id
if [ ! -x "\$rt/deno" ] || [ ! -f "\$app/main.js" ]; then
  self=\$0
  case \$self in */*) ;; *) self=\$(command -v -- "\$self") ;; esac
  if ! mkdir -p "\$base" 2>/dev/null || [ ! -w "\$base" ]; then
    base=\${TMPDIR:-/tmp}/semaphore-agent-\$(id -u)
    rt=\$base/runtime-$runtime_id
    app=\$base/agent-$app_id
    mkdir -p "\$base" || exit 1
  fi
fi
if [ ! -x "\$rt/deno" ] || [ ! -f "\$app/main.js" ]; then
  if command -v sha256sum >/dev/null 2>&1; then
    got=\$(tail -c +\$((offset + 1)) "\$self" | sha256sum | cut -c1-64)
    if [ "\$got" != "\$sum" ]; then
      echo "agent: Cannot unpack \$self: the file is damaged (checksum mismatch)" >&2
      exit 1
    fi
  fi
  tmp=\$(mktemp -d "\$base/.unpack.XXXXXX") || exit 1
  trap 'rm -rf "\$tmp"' EXIT
  trap 'exit 130' INT TERM
  members="$(echo $app_files)"
  [ -x "\$rt/deno" ] || members="\$members runtime/deno"
  if ! tail -c +\$((offset + 1)) "\$self" | tar -xzf - -C "\$tmp" \$members; then
    echo "agent: Cannot unpack \$self into \$base" >&2
    exit 1
  fi
  # Atomic: the first run to finish renames its copy into place; the others drop theirs.
  if [ ! -x "\$rt/deno" ]; then
    if [ -e "\$rt" ] && [ ! -x "\$rt/deno" ]; then rm -rf "\$rt"; fi # damaged by hand
    mv -T "\$tmp/runtime" "\$rt" 2>/dev/null || [ -x "\$rt/deno" ] || mv "\$tmp/runtime" "\$rt" || exit 1
  fi
  if [ ! -f "\$app/main.js" ]; then
    if [ -e "\$app" ] && [ ! -f "\$app/main.js" ]; then rm -rf "\$app"; fi
    mv -T "\$tmp/app" "\$app" 2>/dev/null || [ -f "\$app/main.js" ] || mv "\$tmp/app" "\$app" || exit 1
  fi
  rm -rf "\$tmp"
  trap - EXIT INT TERM
fi
export DENO_NO_UPDATE_CHECK=1
exec "\$rt/deno" run -A --no-prompt --no-config --no-lock --no-remote --no-npm --cached-only --v8-flags=$v8_flags $unstable_flags "\$app/main.js" "\$@"
exit 127
EOF
}

# The header states its own length; fixed-width digits keep that length stable.
header_len=$(write_header "$(printf '%-10s' 0)" | wc -c)
write_header "$(printf '%-10s' "$header_len")" >"$work/agent"
if [ "$(wc -c <"$work/agent")" -ne "$header_len" ]; then
  echo "compile.sh: Cannot build the launcher: header length changed" >&2
  exit 1
fi
cat "$work/payload.tar.gz" >>"$work/agent"
chmod 0755 "$work/agent"
mv -f "$work/agent" "$out"

# Smoke test in a private cache so that it also proves the unpacking works.
smoke_cache=$(mktemp -d)
start=$(date +%s.%N)
XDG_CACHE_HOME="$smoke_cache" smoke_test || {
  rm -rf "$smoke_cache"
  exit 1
}
first=$(date +%s.%N)
XDG_CACHE_HOME="$smoke_cache" smoke_test
second=$(date +%s.%N)
rm -rf "$smoke_cache"

echo "compile.sh: built $out ($(human_size "$out")): self-extracting sh + tar.gz of deno $deno_version and a deno bundle of main.ts (npm deps inlined), agent $agent_version, cache runtime-$runtime_id + agent-$app_id"
awk -v s="$start" -v f="$first" -v e="$second" \
  'BEGIN { printf "compile.sh: dist/agent version: first run (unpack) %.2f s, then %.3f s\n", f - s, e - f }'
