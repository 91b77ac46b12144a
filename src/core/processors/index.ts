import type { InboxStore } from '../../ports/inbox-store';
import type { OutboxStore } from '../../ports/outbox-store';
import type { Publisher } from '../../ports/publisher';
import type { Clock } from '../clock';
import type { Dispatcher } from '../dispatcher';
import type { OutboxEmitter } from '../events';
import type { Logger } from '../logger';
import type { ResolvedTuning } from '../options';

/** What the background processors work with. */
export interface ProcessorContext {
  store: OutboxStore;
  inbox?: InboxStore;
  dispatcher: Dispatcher;
  publisher: Publisher;
  tuning: ResolvedTuning;
  clock: Clock;
  logger: Logger;
  events: OutboxEmitter;
  owner: string;
  random?: () => number;
}

/** The scheduled background passes. Placeholder until the processors land. */
export interface Processors {
  start(): void;
  stop(): Promise<void>;
  readonly running: boolean;
}

export function createProcessors(_ctx: ProcessorContext): Processors {
  let running = false;
  return {
    start: () => void (running = true),
    stop: async () => void (running = false),
    get running() {
      return running;
    },
  };
}
