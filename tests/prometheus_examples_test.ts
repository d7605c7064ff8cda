/**
 * The Prometheus examples operators copy: `promtool` accepts the scrape config and the rules,
 * and the rules fire on the series they are for (`promtool test rules`).
 */

import assert from "node:assert/strict";
import { prometheusSkipReason, promtool } from "./support/prometheus.ts";

const skip = await prometheusSkipReason();
const examples = new URL("../examples/", import.meta.url).pathname;

const RULE_TESTS = `
rule_files:
  - ${examples}prometheus-rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'semaphore_agent_ready{job="semaphore-agent",instance="a1"}'
        values: '1 1 0 0 0 0 0 0 0'
      - series: 'semaphore_agent_log_oldest_unsent_event_age_seconds{job="semaphore-agent",instance="a1"}'
        values: '0 30 90 150 210 270 330 390 450'
      - series: 'semaphore_agent_jobs_finished_total{job="semaphore-agent",instance="a1",result="failed"}'
        values: '0+3x80'
      - series: 'semaphore_agent_jobs_finished_total{job="semaphore-agent",instance="a1",result="passed"}'
        values: '0+1x80'
    alert_rule_test:
      - eval_time: 5m
        alertname: SemaphoreAgentNotReady
        exp_alerts: []
      - eval_time: 8m
        alertname: SemaphoreAgentNotReady
        exp_alerts:
          - exp_labels: { severity: warning, job: semaphore-agent, instance: a1 }
            exp_annotations:
              summary: "Agent a1 cannot take jobs"
              description: "Not registered, or no sync with Semaphore answered for 5 minutes (its /readyz says why)."
      - eval_time: 1m
        alertname: SemaphoreAgentLogBacklog
        exp_alerts: []
      - eval_time: 4m
        alertname: SemaphoreAgentLogBacklog
        exp_alerts:
          - exp_labels: { severity: warning, job: semaphore-agent, instance: a1 }
            exp_annotations:
              summary: "Agent a1 cannot push its job log"
              description: "The oldest job log event not yet accepted by Semaphore is 3m 30s old."
      - eval_time: 80m
        alertname: SemaphoreAgentJobFailureRatio
        exp_alerts:
          - exp_labels: { severity: warning, instance: a1 }
            exp_annotations:
              summary: "Most jobs on agent a1 fail"
              description: "75% of its jobs in the last hour failed: check the host (disk, tools, network)."
`;

Deno.test({
  name: "examples/prometheus.yml and prometheus-rules.yml pass promtool, and the alerts fire",
  ignore: skip !== undefined,
  async fn() {
    const config = await promtool(["check", "config", `${examples}prometheus.yml`]);
    assert.equal(config.code, 0, config.output);
    const rules = await promtool(["check", "rules", `${examples}prometheus-rules.yml`]);
    assert.equal(rules.code, 0, rules.output);
    const dir = await Deno.makeTempDir({ prefix: "promtool_" });
    try {
      await Deno.writeTextFile(`${dir}/rules_test.yml`, RULE_TESTS);
      const tested = await promtool(["test", "rules", `${dir}/rules_test.yml`]);
      assert.equal(tested.code, 0, tested.output);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
