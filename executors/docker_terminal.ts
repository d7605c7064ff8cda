/**
 * The main container's terminal for the stateful-shell protocol: the TTY stream of a hijacked
 * attach connection (`executors/docker_api.ts`), and the container's exit status once the
 * stream ends. It knows nothing of jobs or of the shell protocol itself.
 *
 * @module
 */

import type { Terminal } from "../lib/engine/shell_session.ts";
import type { DockerClient, HijackedStream } from "./docker_api.ts";

/** The main container's terminal: its TTY stream, and its exit status once the stream ends. */
export class ContainerTerminal implements Terminal {
  /** What the container's TTY prints. */
  readonly readable: ReadableStream<Uint8Array>;
  readonly #client: DockerClient;
  readonly #containerId: string;
  readonly #stream: HijackedStream;
  readonly #ended: Promise<void>;
  #hasEnded = false;
  #exited: Promise<number | null> | undefined;

  constructor(client: DockerClient, containerId: string, stream: HijackedStream) {
    this.#client = client;
    this.#containerId = containerId;
    this.#stream = stream;
    let markEnded!: () => void;
    this.#ended = new Promise((resolve) => markEnded = resolve);
    const reader = stream.readable.getReader();
    // A thin wrapper (no pipe) that notes the end of the stream for `exited`.
    this.readable = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const { value, done } = await reader.read();
        if (done) {
          this.#hasEnded = true;
          markEnded();
          controller.close();
        } else {
          controller.enqueue(value);
        }
      },
      cancel: async () => {
        await reader.cancel();
      },
    }, { highWaterMark: 0 });
  }

  /** Whether the container closed its terminal (the shell ended). */
  get ended(): boolean {
    return this.#hasEnded;
  }

  /** Writes to the container's TTY. */
  write(bytes: Uint8Array): Promise<void> {
    return this.#stream.write(bytes);
  }

  /** The container's exit status once the stream ended (`null` when unknown). */
  get exited(): Promise<number | null> {
    this.#exited ??= this.#ended.then(() =>
      this.#client.waitContainer(this.#containerId, { condition: "not-running" })
    ).catch(() => null);
    return this.#exited;
  }

  /** Closes the attach connection. */
  close(): void {
    this.#stream.close();
  }
}
