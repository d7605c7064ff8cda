/**
 * The text of the local toolbox (PIPELINES.md §4): the `checkout` and `checksum` functions and
 * the `cache`, `artifact`, `retry`, `test-results`, `sem-context` (everywhere) and `sem-version`,
 * `sem-service`, `install-package` (host jobs only) commands, as POSIX sh. They read their
 * stores from `SEMAPHORE_LOCAL_*` variables the runner sets (see `toolbox.ts`).
 *
 * @module
 */

/** Script text: the raw template with `\${` (kept from substitution) turned back into `${`. */
function sh(text: TemplateStringsArray): string {
  return text.raw[0].replaceAll("\\${", "${");
}

/** Sourced by every job shell: the functions. */
export const TOOLBOX_FUNCTIONS = sh`# Semaphore local toolbox (agent run)
__sl_abs() {
  # An absolute, normalised path ('.' and '..' removed) without needing realpath -m.
  local p part out old_ifs
  case "$1" in /*) p=$1 ;; *) p=$(pwd)/$1 ;; esac
  out=
  old_ifs=$IFS; IFS=/
  set -f
  for part in $p; do
    case "$part" in
      ''|.) ;;
      ..) out=\${out%/*} ;;
      *) out="$out/$part" ;;
    esac
  done
  set +f; IFS=$old_ifs
  printf '%s\n' "\${out:-/}"
}

checksum() {
  if command -v md5sum >/dev/null 2>&1; then md5sum "$1" | cut -d' ' -f1; else md5 -q "$1"; fi
}

checkout() {
  if [ -z "\${SEMAPHORE_GIT_URL:-}" ] || [ -z "\${SEMAPHORE_GIT_DIR:-}" ] || [ -z "\${SEMAPHORE_GIT_BRANCH:-}" ] || [ -z "\${SEMAPHORE_GIT_SHA:-}" ]; then
    echo "[CHECKOUT ERROR] Some of these variables are unset:"
    echo "SEMAPHORE_GIT_URL=\${SEMAPHORE_GIT_URL:-}"
    echo "SEMAPHORE_GIT_DIR=\${SEMAPHORE_GIT_DIR:-}"
    echo "SEMAPHORE_GIT_BRANCH=\${SEMAPHORE_GIT_BRANCH:-}"
    echo "SEMAPHORE_GIT_SHA=\${SEMAPHORE_GIT_SHA:-}"
    return 1
  fi
  local src dst realhome mode n list
  src=$(__sl_abs "$SEMAPHORE_LOCAL_SOURCE")
  case "$SEMAPHORE_GIT_DIR" in
    /*) dst=$(__sl_abs "$SEMAPHORE_GIT_DIR") ;;
    *) dst=$(__sl_abs "$HOME/$SEMAPHORE_GIT_DIR") ;;
  esac
  realhome=$(__sl_abs "\${SEMAPHORE_LOCAL_REAL_HOME:-/nonexistent}")
  case "$realhome/" in "\${dst%/}/"*)
    echo "checkout: refusing to replace '$dst': it is your home directory or holds it"; return 1 ;;
  esac
  case "$src/" in "\${dst%/}/"*)
    echo "checkout: refusing to replace '$dst': it is or holds the source tree $src"; return 1 ;;
  esac
  case "$dst/" in "$src/"*)
    echo "checkout: refusing to replace '$dst': it lies in the source tree $src"; return 1 ;;
  esac
  rm -rf "$dst" || return 1
  mode=\${SEMAPHORE_LOCAL_CHECKOUT:-copy}
  if [ "$mode" = copy ] && ! command -v git >/dev/null 2>&1; then mode=all; fi
  case "$mode" in
    bind)
      mkdir -p "$(dirname "$dst")" && ln -s "$src" "$dst" || return 1
      cd "$dst" || return 1
      echo "Linked local working tree $src to $dst"
      return 0 ;;
    all)
      mkdir -p "$dst" && cp -a "$src/." "$dst/" || return 1
      n=$(cd "$dst" && find . -path ./.git -prune -o -type f -print | wc -l | tr -d ' ') ;;
    committed)
      mkdir -p "$dst" || return 1
      (cd "$src" && git archive HEAD) | tar -xf - -C "$dst" || return 1
      cp -a "$src/.git" "$dst/.git" || return 1
      n=$(git -C "$src" ls-files | wc -l | tr -d ' ') ;;
    *)
      mkdir -p "$dst" || return 1
      list=$(mktemp) || return 1
      (cd "$src" && git ls-files -z -co --exclude-standard) > "$list" || { rm -f "$list"; return 1; }
      n=$(tr -cd '\000' < "$list" | wc -c | tr -d ' ')
      if [ -d "$src/.git" ]; then printf '.git\000' >> "$list"; fi
      (cd "$src" && tar --null --ignore-failed-read -cf - -T "$list" 2>/dev/null) | tar -xf - -C "$dst" || { rm -f "$list"; return 1; }
      rm -f "$list"
      if [ -f "$src/.git" ]; then
        # A linked work tree: its .git file points into the real repository, whose index and
        # refs a job must not touch. A clone sharing the objects (read only) stands in for it.
        git clone -q --no-checkout --shared "$src" "$dst/.git-local-clone" >/dev/null 2>&1 &&
          mv "$dst/.git-local-clone/.git" "$dst/.git" && rm -rf "$dst/.git-local-clone" &&
          git -C "$dst" reset -q "$(git -C "$src" rev-parse HEAD)" >/dev/null 2>&1
      fi ;;
  esac
  cd "$dst" || return 1
  echo "Copied local working tree $src to $dst ($n files)"
}
`;

/** `cache` (§4.2). */
const CACHE = sh`#!/bin/sh
dir=\${SEMAPHORE_LOCAL_CACHE_DIR:?SEMAPHORE_LOCAL_CACHE_DIR is not set}
mkdir -p "$dir" || exit 2
norm() { printf '%s' "$1" | tr '/' '-'; }
sum() { if command -v md5sum >/dev/null 2>&1; then md5sum "$1" | cut -d' ' -f1; else md5 -q "$1"; fi; }
branch=$(norm "\${SEMAPHORE_GIT_PR_BRANCH:-\${SEMAPHORE_GIT_BRANCH:-}}")

store_one() {
  key=$(norm "$1"); path=$2
  if [ -n "\${SEMAPHORE_LOCAL_NO_CACHE:-}" ]; then echo "Skipping the store of '$key' (--no-cache)."; return 0; fi
  if [ -e "$dir/$key" ]; then echo "Key '$key' already exists."; return 0; fi
  if [ ! -e "$path" ]; then echo "'$path' doesn't exist locally, skipping."; return 0; fi
  echo "Uploading '$path' with cache key '$key'..."
  tmp="$dir/.tmp-$$-$key"
  case "$path" in
    /*) tar -czPf "$tmp" "$path" ;;
    *) tar -czf "$tmp" "$path" ;;
  esac || { rm -f "$tmp"; echo "Cannot archive '$path'"; return 1; }
  mv "$tmp" "$dir/$key" && echo "Upload complete."
}

restore_keys() {
  old_ifs=$IFS; IFS=,
  for raw in $1; do
    IFS=$old_ifs
    key=$(norm "$raw")
    [ -z "$key" ] && continue
    found=
    if [ -z "\${SEMAPHORE_LOCAL_NO_CACHE:-}" ]; then
      if [ -f "$dir/$key" ]; then found=$key
      else found=$(ls -t "$dir" 2>/dev/null | grep -E -- "$key" | head -n 1); fi
    fi
    if [ -n "$found" ]; then
      echo "HIT: '$key', using key '$found'."
      tar -xzPf "$dir/$found" || { echo "Cannot unpack '$found'"; return 1; }
      echo "Restored: '$found'."
      return 0
    fi
    echo "MISS: '$key'."
  done
  IFS=$old_ifs
  return 0
}

# lockfile prefix path...
detected() {
  [ -f .nvmrc ] && echo ".nvmrc nvm $HOME/.nvm"
  [ -f Gemfile.lock ] && echo "Gemfile.lock gems vendor/bundle"
  [ -f package-lock.json ] && echo "package-lock.json node-modules node_modules"
  [ -f yarn.lock ] && echo "yarn.lock yarn-cache $HOME/.cache/yarn" && echo "yarn.lock node-modules node_modules"
  [ -f mix.lock ] && echo "mix.lock mix-deps deps" && echo "mix.lock mix-build _build"
  [ -f requirements.txt ] && echo "requirements.txt requirements .pip_cache"
  [ -f composer.lock ] && echo "composer.lock composer vendor"
  [ -f pom.xml ] && echo "pom.xml maven .m2" && echo "pom.xml maven-target target"
  [ -f Podfile.lock ] && echo "Podfile.lock pods Pods"
  [ -f go.sum ] && echo "go.sum go $HOME/go/pkg/mod"
  return 0
}

auto() {
  lines=$(detected)
  if [ -z "$lines" ]; then echo "Nothing to $1: no supported lockfile in $(pwd)."; return 0; fi
  echo "$lines" | while read -r lock prefix path; do
    [ -z "$lock" ] && continue
    md5=$(sum "$lock")
    if [ "$1" = store ]; then store_one "$prefix-$branch-$md5" "$path"
    else restore_keys "$prefix-$branch-$md5,$prefix-$branch,$prefix-master,$prefix-main"; fi
  done
}

cmd=\${1:-}; [ $# -gt 0 ] && shift
case "$cmd" in
  store) if [ $# -eq 0 ]; then auto store; else store_one "$1" "$2"; fi ;;
  restore) if [ $# -eq 0 ]; then auto restore; else restore_keys "$1"; fi ;;
  has_key) [ -z "\${SEMAPHORE_LOCAL_NO_CACHE:-}" ] && [ -f "$dir/$(norm "$1")" ] && { echo "Key '$(norm "$1")' exists in the cache store."; exit 0; }
    echo "Key '$(norm "$1")' doesn't exist in the cache store."; exit 1 ;;
  is_not_empty) [ -n "$(ls -A "$dir" 2>/dev/null)" ] ;;
  list) ls -t "$dir" ;;
  delete) key=$(norm "$1"); if [ -f "$dir/$key" ]; then rm -f "$dir/$key"; echo "Key '$key' is deleted."; else echo "Key '$key' doesn't exist in the cache store."; fi ;;
  clear) rm -rf "\${dir:?}"/* && echo "Deleted all caches." ;;
  usage) du -sh "$dir" | cut -f1 ;;
  *) echo "Usage: cache store|restore [KEY [PATH]] | has_key KEY | is_not_empty | list | delete KEY | clear | usage"; exit 1 ;;
esac
`;

/** `artifact` (§4.2). */
const ARTIFACT = sh`#!/bin/sh
usage() { echo "Usage: artifact push|pull|yank job|workflow|project PATH [-d DEST] [-f]"; exit 1; }
[ $# -ge 3 ] || usage
verb=$1; ns=$2; shift 2
path=; dest=; force=
while [ $# -gt 0 ]; do
  case "$1" in
    -d|--destination) dest=$2; shift 2 ;;
    --destination=*) dest=\${1#*=}; shift ;;
    -f|--force) force=1; shift ;;
    -e|--expire-in) shift 2 ;;
    --expire-in=*) shift ;;
    -v|--verbose) shift ;;
    *) path=$1; shift ;;
  esac
done
[ -n "$path" ] || usage
case "$ns" in
  job) base="$SEMAPHORE_LOCAL_RUN_ARTIFACTS/jobs/$SEMAPHORE_JOB_ID"; shown="artifacts/jobs/$SEMAPHORE_JOB_ID" ;;
  workflow) base="$SEMAPHORE_LOCAL_RUN_ARTIFACTS/workflows/$SEMAPHORE_WORKFLOW_ID"; shown="artifacts/workflows/$SEMAPHORE_WORKFLOW_ID" ;;
  project) base="$SEMAPHORE_LOCAL_PROJECT_ARTIFACTS"; shown="artifacts/projects/$SEMAPHORE_PROJECT_ID" ;;
  *) usage ;;
esac
case "$verb" in
  push)
    [ -e "$path" ] || { echo "Error: path '$path' does not exist locally."; exit 1; }
    name=\${dest:-$(basename "$path")}
    target="$base/$name"
    if [ -e "$target" ] && [ -z "$force" ]; then echo "Error: '$shown/$name' already exists; use --force to overwrite it."; exit 1; fi
    mkdir -p "$(dirname "$target")" && rm -rf "$target" && cp -R "$path" "$target" || exit 1
    echo "File '$path' pushed to '$shown/$name' for current $ns." ;;
  pull)
    source="$base/$path"
    [ -e "$source" ] || { echo "Error: '$shown/$path' does not exist."; exit 1; }
    name=\${dest:-$(basename "$path")}
    if [ -e "$name" ] && [ -z "$force" ]; then echo "Error: '$name' already exists locally; use --force to overwrite it."; exit 1; fi
    rm -rf "$name" && mkdir -p "$(dirname "$name")" && cp -R "$source" "$name" || exit 1
    echo "File '$shown/$path' pulled to '$name' for current $ns." ;;
  yank)
    [ -e "$base/$path" ] || { echo "Error: '$shown/$path' does not exist."; exit 1; }
    rm -rf "$base/$path" && echo "File '$shown/$path' yanked for current $ns." ;;
  *) usage ;;
esac
`;

/** `retry` (§4.2). */
const RETRY = sh`#!/bin/sh
times=3; pause=0
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--times) times=$2; shift 2 ;;
    --times=*) times=\${1#*=}; shift ;;
    -s|--sleep) pause=$2; shift 2 ;;
    --sleep=*) pause=\${1#*=}; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "Usage: retry [-t TIMES] [-s SLEEP] COMMAND..."; exit 1; }
i=1
while :; do
  if [ $# -eq 1 ]; then eval "$1"; else "$@"; fi
  status=$?
  [ $status -eq 0 ] && exit 0
  if [ $i -ge "$times" ]; then
    echo "[$i/$times] Execution Failed with exit status $status. No more retries."
    exit $status
  fi
  echo "[$i/$times] Execution Failed with exit status $status. Retrying."
  sleep "$pause"
  i=$((i + 1))
done
`;

/** `test-results` (§4.2). */
const TEST_RESULTS = sh`#!/bin/sh
if [ -n "\${SEMAPHORE_LOCAL_TOOLBOX_PASSTHROUGH:-}" ]; then
  # --toolbox-passthrough: the real test-results CLI from the PATH, when there is one.
  old_ifs=$IFS; IFS=:
  for dir in $PATH; do
    case "$dir" in "$SEMAPHORE_LOCAL_TOOLBOX"*|"$HOME/.toolbox"*) continue ;; esac
    if [ -x "$dir/test-results" ]; then IFS=$old_ifs; exec "$dir/test-results" "$@"; fi
  done
  IFS=$old_ifs
fi
cmd=\${1:-}; [ $# -gt 0 ] && shift
case "$cmd" in
  publish) ;;
  gen-pipeline-report|compile|combine)
    echo "test-results $cmd: nothing to do locally; the raw reports are under $SEMAPHORE_LOCAL_RUN_ARTIFACTS"; exit 0 ;;
  *) echo "Usage: test-results publish FILE... [--name NAME] [--no-raw]"; exit 1 ;;
esac
files=; raw=1
while [ $# -gt 0 ]; do
  case "$1" in
    -N|--name|-S|--suite-prefix|-p|--parser) shift 2 ;;
    --no-raw) raw=; shift ;;
    -*) shift ;;
    *) files="$files
$1"; shift ;;
  esac
done
count=$(printf '%s\n' "$files" | grep -c .)
[ "$count" -gt 0 ] || { echo "test-results: no report file given"; exit 1; }
jobdir="$SEMAPHORE_LOCAL_RUN_ARTIFACTS/jobs/$SEMAPHORE_JOB_ID/test-results"
wfdir="$SEMAPHORE_LOCAL_RUN_ARTIFACTS/workflows/$SEMAPHORE_WORKFLOW_ID/test-results/$SEMAPHORE_PIPELINE_ID"
mkdir -p "$jobdir" "$wfdir"
i=0; t=0; f=0; e=0; s=0
for file in $files; do
  [ -f "$file" ] || { echo "test-results: '$file' not found"; exit 1; }
  i=$((i + 1))
  if [ -n "$raw" ]; then
    if [ "$count" -eq 1 ]; then cp "$file" "$jobdir/junit.xml"; else cp "$file" "$jobdir/junit-$i.xml"; fi
  fi
  set -- $(awk '
    { text = text " " $0 }
    END {
      tag = "<testsuite[ \t]"; if (text !~ tag) tag = "<testsuites[ \t]"
      n = split(text, parts, tag)
      for (k = 2; k <= n; k++) {
        head = parts[k]; sub(/>.*/, "", head)
        split("tests failures errors skipped", names, " ")
        for (j = 1; j <= 4; j++) {
          if (match(head, names[j] "=\"[0-9]+\"")) {
            v = substr(head, RSTART, RLENGTH); gsub(/[^0-9]/, "", v); sums[j] += v
          }
        }
      }
      printf "%d %d %d %d\n", sums[1], sums[2], sums[3], sums[4]
    }' "$file")
  t=$((t + $1)); f=$((f + $2)); e=$((e + $3)); s=$((s + $4))
  cp "$file" "$wfdir/$SEMAPHORE_JOB_ID-$i.xml"
done
echo "tests: $t, failures: $f, errors: $e, skipped: $s"
`;

/** `sem-context` (§4.2). */
const SEM_CONTEXT = sh`#!/bin/sh
dir="$SEMAPHORE_LOCAL_RUN_ARTIFACTS/workflows/$SEMAPHORE_WORKFLOW_ID/.workflow-context"
mkdir -p "$dir" 2>/dev/null || { echo "sem-context: cannot reach the context store"; exit 2; }
check_key() { printf '%s' "$1" | grep -Eq '^[A-Za-z0-9_.-]+$' || { echo "sem-context: invalid key '$1'"; exit 3; }; }
case "\${1:-}" in
  put)
    key=\${2%%=*}; value=\${2#*=}
    check_key "$key"
    [ -e "$dir/$key" ] && { echo "sem-context: key '$key' already exists"; exit 1; }
    printf '%s' "$value" > "$dir/$key" || exit 2 ;;
  get)
    check_key "\${2:-}"
    [ -f "$dir/$2" ] || { echo "sem-context: key '$2' does not exist"; exit 1; }
    cat "$dir/$2"; echo ;;
  delete)
    check_key "\${2:-}"
    [ -f "$dir/$2" ] || { echo "sem-context: key '$2' does not exist"; exit 1; }
    rm -f "$dir/$2" ;;
  *) echo "Usage: sem-context put KEY=VALUE | get KEY | delete KEY"; exit 3 ;;
esac
`;

/** `sem-version` (§4.2). */
const SEM_VERSION = sh`#!/bin/sh
lang=\${1:-}; version=\${2:-}; ignore=
[ "\${3:-}" = "-i" ] && ignore=1
[ -n "$lang" ] && [ -n "$version" ] || { echo "Usage: sem-version LANGUAGE VERSION [-i]"; exit 1; }
case "$lang" in
  node) found=$(node --version 2>/dev/null | sed 's/^v//') ;;
  ruby) found=$(ruby -e 'print RUBY_VERSION' 2>/dev/null) ;;
  python) found=$(python3 --version 2>&1 | awk '{print $2}') ;;
  go) found=$(go version 2>/dev/null | awk '{print $3}' | sed 's/^go//') ;;
  java) found=$(java -version 2>&1 | head -n 1 | awk -F'"' '{print $2}') ;;
  php) found=$(php -r 'echo PHP_VERSION;' 2>/dev/null) ;;
  elixir) found=$(elixir --version 2>/dev/null | tail -n 1 | awk '{print $2}') ;;
  erlang) found=$(erl -noshell -eval 'io:format("~s",[erlang:system_info(otp_release)]), halt().' 2>/dev/null) ;;
  scala) found=$(scala -version 2>&1 | awk '{print $5}') ;;
  rust) found=$(rustc --version 2>/dev/null | awk '{print $2}') ;;
  flutter) found=$(flutter --version 2>/dev/null | head -n 1 | awk '{print $2}') ;;
  *) found= ;;
esac
echo "sem-version: using local $lang \${found:-(none)} (requested $version)"
case "$found" in
  "$version"*) exit 0 ;;
esac
[ -n "\${SEMAPHORE_LOCAL_STRICT_VERSIONS:-}" ] && [ -z "$ignore" ] && exit 1
exit 0
`;

/** `sem-service` (§4.2), with the docker CLI. */
const SEM_SERVICE = sh`#!/bin/bash
verb=\${1:-}; svc=\${2:-}; shift 2 2>/dev/null
version=; user=; pass=; db=
for arg in "$@"; do
  case "$arg" in
    --username=*) user=\${arg#*=} ;;
    --password=*) pass=\${arg#*=} ;;
    --db=*) db=\${arg#*=} ;;
    -*) ;;
    *) version=$arg ;;
  esac
done
command -v docker >/dev/null 2>&1 || { echo "sem-service: docker is not available"; exit 1; }
docker info >/dev/null 2>&1 || { echo "sem-service: the Docker daemon does not answer"; exit 1; }
name="semaphore-local-\${SEMAPHORE_JOB_ID:0:8}-$svc"
envs=()
case "$svc" in
  mysql) version=\${version:-5.6}; port=3306; envs=(-e MYSQL_ALLOW_EMPTY_PASSWORD=yes -e "MYSQL_DATABASE=\${db:-test}"); [ -n "$pass" ] && envs=(-e "MYSQL_ROOT_PASSWORD=$pass" -e "MYSQL_DATABASE=\${db:-test}") ;;
  postgres) version=\${version:-9.6}; port=5432; envs=(-e "POSTGRES_PASSWORD=\${pass:-semaphore}"); [ -n "$user" ] && envs+=(-e "POSTGRES_USER=$user"); [ -n "$db" ] && envs+=(-e "POSTGRES_DB=$db") ;;
  postgis) version=\${version:-9.6-2.5}; port=5432; envs=(-e "POSTGRES_PASSWORD=\${pass:-semaphore}") ;;
  redis) version=\${version:-4.0}; port=6379 ;;
  valkey) version=\${version:-8.1}; port=6379 ;;
  mongodb) version=\${version:-4.1}; port=27017 ;;
  elasticsearch) version=\${version:-6.5}; port=9200 ;;
  opensearch) version=\${version:-2}; port=9200 ;;
  memcached) version=\${version:-1.5}; port=11211 ;;
  rabbitmq) version=\${version:-3.8}; port=5672 ;;
  cassandra) version=\${version:-3.11}; port=9042 ;;
  rethinkdb) version=\${version:-2.3}; port=28015 ;;
  *) echo "Usage: sem-service start|stop|status SERVICE [VERSION]"; exit 1 ;;
esac
open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
case "$verb" in
  start)
    if open "$port"; then echo "sem-service: port $port is already in use; cannot start $svc"; exit 1; fi
    touch "$HOME/.sem-service-used"
    docker run --net=host --rm -d --name "$name" --label "semaphore-agent.job=$SEMAPHORE_JOB_ID" "\${envs[@]}" "registry.semaphoreci.com/$svc:$version" >/dev/null || exit 1
    for _ in $(seq 1 120); do open "$port" && { echo "$svc $version is running on port $port"; exit 0; }; sleep 0.5; done
    echo "sem-service: $svc did not open port $port in 60 s"; exit 1 ;;
  stop) docker rm -f "$name" >/dev/null 2>&1; echo "$svc stopped" ;;
  status) if [ -n "$(docker ps -q -f "name=^$name$")" ]; then echo "$svc is running"; else echo "$svc is not running"; exit 1; fi ;;
  *) echo "Usage: sem-service start|stop|status SERVICE [VERSION]"; exit 1 ;;
esac
`;

/** `install-package` (§4.2). */
const INSTALL_PACKAGE = sh`#!/bin/sh
if [ -n "\${SEMAPHORE_LOCAL_ALLOW_SUDO:-}" ]; then exec sudo apt-get install -y "$@"; fi
echo "notice: install-package is not run locally (give --allow-sudo to let it use sudo apt-get); install $* yourself if needed"
exit 0
`;

/** Executables for every job, by file name. */
export const COMMON_COMMANDS: Readonly<Record<string, string>> = {
  "cache": CACHE,
  "artifact": ARTIFACT,
  "retry": RETRY,
  "test-results": TEST_RESULTS,
  "sem-context": SEM_CONTEXT,
};

/** Executables for host (shell) jobs only. */
export const HOST_COMMANDS: Readonly<Record<string, string>> = {
  "sem-version": SEM_VERSION,
  "sem-service": SEM_SERVICE,
  "install-package": INSTALL_PACKAGE,
};
