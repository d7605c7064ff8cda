/**
 * A real StatsD receiver for tests: a UDP socket on 127.0.0.1 (node:dgram: Deno's own UDP API
 * is unstable) that keeps every packet it gets.
 *
 * @module
 */

import { createSocket } from "node:dgram";

/** A bound receiver; dispose it to close the socket. */
export interface StatsdReceiver extends AsyncDisposable {
  readonly port: number;
  /** Every packet so far, as text, in arrival order. */
  readonly packets: string[];
  /** Resolves with the packets once `n` have arrived. */
  received(n: number): Promise<string[]>;
}

/** Binds a receiver to a free port on 127.0.0.1. */
export async function startStatsdReceiver(): Promise<StatsdReceiver> {
  const socket = createSocket("udp4");
  const packets: string[] = [];
  const waiters: Array<() => void> = [];
  socket.on("message", (data) => {
    packets.push(new TextDecoder().decode(data));
    waiters.shift()?.();
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    port: socket.address().port,
    packets,
    async received(n: number): Promise<string[]> {
      while (packets.length < n) await new Promise<void>((resolve) => waiters.push(resolve));
      return packets;
    },
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
