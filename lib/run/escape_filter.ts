/**
 * Makes a job's output safe to show on a person's terminal (`agent run`): a job must not be
 * able to fake the display or reach the user's system through escape sequences. Colours stay;
 * everything else a terminal would act on goes:
 *
 * - SGR (`ESC [ <digits ; :> m`, colours and text attributes) is kept as is;
 * - every other CSI (cursor movement, screen and line clears, scroll regions, mode changes,
 *   device status queries that make the terminal type an answer) is removed;
 * - OSC (window title, clipboard writes with OSC 52, hyperlinks, palette changes), DCS, SOS, PM
 *   and APC strings are removed up to their terminator (BEL or ST);
 * - other escape sequences (`ESC c` reset, `ESC 7`/`ESC 8`, charset switches) are removed;
 * - C1 controls (U+0080 to U+009F, which some terminals obey as 8-bit CSI/OSC/...) are treated
 *   as their 7-bit forms, and C0 controls other than backspace, tab, newline and carriage
 *   return (progress bars) are removed, as is DEL.
 *
 * Sequences may be split across chunks: the filter keeps its state between calls.
 *
 * @module
 */

const ESC = "\x1b";
const BEL = "\x07";
const CAN = "\x18";
const SUB = "\x1a";
/** The 8-bit String Terminator. */
const ST_C1 = "\x9c";
/** Bytes of SGR parameters. */
const SGR_PARAMS = /^[0-9;:]*$/;
/** The characters that are not shown as they are (see {@linkcode isPlain}). */
// deno-lint-ignore no-control-regex -- control characters are what this filter finds
const CONTROL = /[\x00-\x07\x0b\x0c\x0e-\x1f\x7f-\x9f]/g;
/** The characters that can end an OSC, DCS, SOS, PM or APC string. */
// deno-lint-ignore no-control-regex -- as above
const STRING_END = /[\x07\x18\x1a\x1b\x9c]/g;
/** A complete SGR sequence at `lastIndex`. */
// deno-lint-ignore no-control-regex -- as above
const WHOLE_SGR = /\x1b\[[0-9;:]*m/y;
/** Longest CSI whose parameters are kept (an SGR is far shorter). */
const MAX_CSI = 256;

type State = "ground" | "esc" | "escIntermediate" | "csi" | "string" | "stringEsc";

/** Whether a character is shown as it is: printable, or backspace, tab, newline, CR. */
function isPlain(ch: string, code: number): boolean {
  if (code >= 0x20) return code !== 0x7f && (code < 0x80 || code > 0x9f);
  return ch === "\b" || ch === "\t" || ch === "\n" || ch === "\r";
}

/** A streaming filter of terminal output; one per stream of text. */
export class EscapeFilter {
  #state: State = "ground";
  /** Parameters and intermediates of the CSI being read. */
  #csi = "";
  #csiTooLong = false;
  #styled = false;

  /** Returns what of `text` is safe to show; an unfinished sequence waits for the next call. */
  push(text: string): string {
    let out = "";
    let i = 0;
    while (i < text.length) {
      // Plain text and the inside of strings are skipped over with one regex scan each.
      const skip = this.#state === "ground"
        ? CONTROL
        : this.#state === "string"
        ? STRING_END
        : null;
      if (skip) {
        skip.lastIndex = i;
        const next = skip.exec(text)?.index ?? text.length;
        if (this.#state === "ground" && next > i) {
          if (i === 0 && next === text.length) return text;
          out += text.slice(i, next);
        }
        i = next;
        if (i === text.length) break;
        if (this.#state === "ground" && text[i] === ESC) {
          // A whole colour sequence, the common case, in one go.
          WHOLE_SGR.lastIndex = i;
          const sgr = WHOLE_SGR.exec(text)?.[0];
          if (sgr !== undefined && sgr.length <= MAX_CSI + 3) {
            out += sgr;
            this.#styled = true;
            i += sgr.length;
            continue;
          }
        }
      }
      out += this.#step(text[i], text.charCodeAt(i));
      i++;
    }
    return out;
  }

  /** Whether a colour or text attribute was let through since the last reset. */
  get styled(): boolean {
    return this.#styled;
  }

  /** Forgets an unfinished sequence and past colours (at the start of a command's output). */
  reset(): void {
    this.#endSequence();
    this.#styled = false;
  }

  #endSequence(): void {
    this.#state = "ground";
    this.#csi = "";
    this.#csiTooLong = false;
  }

  /** One character outside a plain run; returns what to show. */
  #step(ch: string, code: number): string {
    switch (this.#state) {
      case "ground":
        if (ch === ESC) this.#state = "esc";
        else if (code === 0x9b) this.#startCsi();
        else if (
          code === 0x9d || code === 0x90 || code === 0x98 || code === 0x9e || code === 0x9f
        ) {
          this.#state = "string";
        }
        return ""; // any other control is dropped
      case "esc":
        if (ch === "[") this.#startCsi();
        else if (ch === "]" || ch === "P" || ch === "X" || ch === "^" || ch === "_") {
          this.#state = "string";
        } else if (ch === ESC) this.#state = "esc";
        else if (code >= 0x20 && code <= 0x2f) this.#state = "escIntermediate";
        else if (code >= 0x30 && code <= 0x7e) this.#state = "ground";
        else return this.#abort(ch, code);
        return "";
      case "escIntermediate":
        if (code >= 0x20 && code <= 0x2f) return "";
        if (code >= 0x30 && code <= 0x7e) {
          this.#state = "ground";
          return "";
        }
        return this.#abort(ch, code);
      case "csi":
        if (code >= 0x20 && code <= 0x3f) {
          if (this.#csi.length < MAX_CSI) this.#csi += ch;
          else this.#csiTooLong = true;
          return "";
        }
        if (code >= 0x40 && code <= 0x7e) {
          const keep = ch === "m" && !this.#csiTooLong && SGR_PARAMS.test(this.#csi);
          const sgr = keep ? `${ESC}[${this.#csi}m` : "";
          if (keep) this.#styled = true;
          this.#endSequence();
          return sgr;
        }
        return this.#abort(ch, code);
      case "string":
        if (ch === ESC) this.#state = "stringEsc";
        else if (ch === BEL || ch === ST_C1 || ch === CAN || ch === SUB) this.#state = "ground";
        return "";
      case "stringEsc":
        if (ch === "\\") {
          this.#state = "ground";
          return "";
        }
        // Another sequence begins: the string ended there.
        this.#state = "esc";
        return this.#step(ch, code);
    }
  }

  /** Ends an unfinished sequence at `ch`, which is then read as if outside any sequence. */
  #abort(ch: string, code: number): string {
    this.#endSequence();
    if (ch === CAN || ch === SUB) return "";
    return isPlain(ch, code) ? ch : this.#step(ch, code);
  }

  #startCsi(): void {
    this.#state = "csi";
    this.#csi = "";
    this.#csiTooLong = false;
  }
}

/** `text` with every escape sequence but colours removed, in one go (nothing waits). */
export function stripEscapes(text: string): string {
  return new EscapeFilter().push(text);
}
