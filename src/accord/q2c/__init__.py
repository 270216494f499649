"""Quote to cash: the business processes that carry a won deal to cash in the bank.

One module per process — :mod:`.deal_won` (customer, project, billing schedule),
:mod:`.billing` (approved work → invoice → ERP → billed), :mod:`.payments`
(payments, credit memos, write-offs, realised FX) and :mod:`.amendment` (a new
contract version mid-period) — plus duplicate detection (:mod:`.matching`), the
timeline of one deal (:mod:`.trace`) and the end-to-end scenario
(:mod:`.demo`). See ``docs/quote-to-cash.md``.
"""
