import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import type { Sequelize, Transaction } from 'sequelize';

/**
 * Sequelize 6 lets model calls pick up an ambient transaction from a "CLS namespace" (the
 * cls-hooked API: get, set, run, bind). This is that namespace on AsyncLocalStorage, so that model
 * calls inside a request handler join the request's unit of work without a `transaction` option.
 */
class AsyncLocalNamespace {
  private readonly storage = new AsyncLocalStorage<Map<string, unknown>>();

  get(key: string): unknown {
    return this.storage.getStore()?.get(key);
  }

  set<T>(key: string, value: T): T {
    this.storage.getStore()?.set(key, value);
    return value;
  }

  run<T>(fn: (context: Map<string, unknown>) => T): T {
    const context = new Map(this.storage.getStore() ?? []);
    return this.storage.run(context, () => fn(context));
  }

  bind<F extends (...args: any[]) => any>(fn: F): F {
    return AsyncResource.bind(fn) as unknown as F;
  }
}

interface ClsNamespace {
  get(key: string): unknown;
  set(key: string, value: unknown): unknown;
  run(fn: (context: unknown) => unknown): unknown;
  bind(fn: unknown): unknown;
}

type SequelizeClass = { _cls?: ClsNamespace; useCLS(ns: ClsNamespace): unknown };

function classOf(sequelize: Sequelize): SequelizeClass {
  return sequelize.constructor as unknown as SequelizeClass;
}

/**
 * Makes sure the Sequelize class behind `sequelize` has a CLS namespace. An application that
 * already installed one (cls-hooked) keeps it: this library then uses that namespace.
 */
export function installTransactionContext(sequelize: Sequelize): void {
  const cls = classOf(sequelize);
  if (!cls._cls) cls.useCLS(new AsyncLocalNamespace());
}

/**
 * Runs `fn` with `tx` as the ambient transaction of this async context and everything it starts.
 */
export function runWithTransaction<T>(sequelize: Sequelize, tx: Transaction | null, fn: () => T): T {
  const ns = classOf(sequelize)._cls;
  if (!ns) throw new Error('dapr-outbox: the transaction context is not installed');
  let result!: T;
  ns.run(() => {
    ns.set('transaction', tx);
    result = fn();
  });
  return result;
}

/** The ambient transaction of the current async context, if any. */
export function currentTransaction(sequelize: Sequelize): Transaction | undefined {
  const t = classOf(sequelize)._cls?.get('transaction') as Transaction | null | undefined;
  return t ?? undefined;
}
