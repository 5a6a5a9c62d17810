/**
 * Moments within a sliding window (the connections denied in the last ten minutes, for
 * the tree's badge and the status bar): adding is O(1) and counting drops only what
 * aged out, so a flood of denials costs nothing per event.
 */
export const DENIAL_WINDOW_MS = 10 * 60_000;

export class RecentTimes {
  private times: number[] = [];
  private head = 0;

  constructor(private readonly windowMs = DENIAL_WINDOW_MS) {}

  /** T in ms; adds arriving in time order keep the count exact (older ones count until they age out). */
  add(t: number): void {
    this.times.push(t);
  }

  count(now = Date.now()): number {
    const since = now - this.windowMs;
    while (this.head < this.times.length && this.times[this.head]! < since) this.head++;
    if (this.head > 1024 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    return this.times.length - this.head;
  }

  clear(): void {
    this.times = [];
    this.head = 0;
  }
}
