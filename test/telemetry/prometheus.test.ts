/**
 * The README's Prometheus wiring, with the real OpenTelemetry Prometheus exporter: a meter
 * provider whose reader is the exporter, registered before the outbox is created, and the
 * exporter's handler mounted at GET /metrics.
 */
import assert from 'node:assert/strict';
import express from 'express';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { MetricReader } from '@opentelemetry/sdk-metrics';
import { listen } from '../router/helpers';
import { meteredOrdersService, postOrder, settle } from './helpers';

describe('telemetry: the Prometheus exporter (README wiring)', () => {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  // The exporter depends on its own copy of sdk-metrics (2.12.0 beside the top-level 2.12.1):
  // the same reader at run time, two declarations of its private fields for the compiler.
  const suite = meteredOrdersService(() => exporter as unknown as MetricReader);

  it('GET /metrics shows the messaging counters, histograms and the outbox gauges', async () => {
    const app = express();
    app.get('/metrics', (req, res) => exporter.getMetricsRequestHandler(req, res));
    const server = await listen(app);
    const { service } = suite;
    try {
      await postOrder(service, 'o-1');
      await settle(service);
      const res = await fetch(`${server.url}/metrics`);
      assert.equal(res.status, 200);
      const text = await res.text();
      const line = (pattern: RegExp) => {
        const found = text.split('\n').find((l) => pattern.test(l));
        assert.ok(found, `a line matching ${pattern} in:\n${text}`);
        return found;
      };
      assert.match(line(/^messaging_client_sent_messages_total\{/), /messaging_destination_name="OrderPlaced".* 1$/);
      assert.match(line(/^messaging_client_consumed_messages_total\{/), /messaging_consumer_group_name="pubsub\/OrderPlaced".* 1$/);
      assert.match(line(/^messaging_client_operation_duration_count\{/), / 1$/);
      assert.match(line(/^messaging_process_duration_count\{/), / 1$/);
      assert.match(line(/^outbox_messages\{outbox_state="published"/), / 1$/);
      assert.match(line(/^outbox_oldest_pending_age\{/), / 0$/);
      assert.match(line(/^outbox_terminal_failures\{/), / 0$/);
      assert.match(line(/^outbox_inbox_size\{/), / 1$/);
    } finally {
      await server.close();
    }
  });
});
