"""Which failures a business-process step retries: not bad input, which no retry mends."""

from __future__ import annotations

from accord.errors import (
    InvalidInput,
    RuleViolation,
    ScenarioError,
    TransientError,
    worth_retrying,
)
from accord.q2c.context import step


def test_bad_input_is_not_retried_and_everything_else_is() -> None:
    assert not worth_retrying(InvalidInput("write-off 9 outside 1..5", field="amount"))
    assert not worth_retrying(ScenarioError("bad scenario"))
    assert worth_retrying(TransientError("503 from the vendor", retry_after=2.0))
    assert worth_retrying(RuleViolation("records changed while the batch was applied"))
    assert worth_retrying(ConnectionResetError())


def test_a_business_step_keeps_the_function_it_decorates() -> None:
    def issue(invoice_id: str) -> str:
        """Issue one invoice."""
        return invoice_id

    decorated = step(0.5)(issue)
    assert decorated.__name__ == "issue" and decorated.__doc__ == "Issue one invoice."
