/**
 * SIGTERM and SIGINT caught from the first milliseconds of the process, before the gateway has loaded (about a second:
 * GraphQL, Yoga, the schema) and registered its own handlers. A process with no handler dies at once on either, except
 * as PID 1 in a container, where the kernel drops them: a `docker stop` in that second was ignored, the gateway went on
 * to listen, and Docker killed it when its stop timeout ran out. Held here, they are handed to the gateway's handlers.
 */
const held: NodeJS.Signals[] = [];
const hold = (signal: NodeJS.Signals) => void held.push(signal);

export function holdSignals(): void {
  process.on('SIGTERM', hold);
  process.on('SIGINT', hold);
}

/** Stops holding, and returns the signals held so far, oldest first. */
export function takeHeldSignals(): NodeJS.Signals[] {
  process.off('SIGTERM', hold);
  process.off('SIGINT', hold);
  return held.splice(0);
}
