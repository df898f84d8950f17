"""The report's words: the headline figures, every assumption in plain words, and what is left out.

Read from the analysts' copy alone (roi.summary and roi.assumptions), so a report made from a
file says what that file's run assumed, not what today's config says.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pipelines.report.data import ReportData

# How each counterfactual method builds the revenue expected without the CRM.
COUNTERFACTUALS = {
    "flat": "the average period of the baseline, every period alike",
    "seasonal": "the same month (or quarter) of the last baseline year, grown by the baseline's "
                "year-on-year growth",
    "trend": "the baseline's growth trend (and seasonality, with two baseline years) carried forward",
    "control": "the treated group's baseline, moved as a control group's revenue moved",
}


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class Story:
    title: str
    as_of: str
    figures: list[Figure]
    assumptions: list[str]
    not_included: list[str]


def _date(value: object) -> str:
    return dt.date.fromisoformat(str(value)).strftime("%-d %b %Y")


def _month(value: object) -> str:
    return dt.date.fromisoformat(str(value)).strftime("%b %Y")


def _number(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %" if abs(100 * value - round(100 * value)) < 1e-9 else f"{100 * value:.1f} %"


def tell(data: ReportData) -> Story:
    """The headline and the plain-word assumptions of one report."""
    s, a = data.summary, data.assumptions
    currency = a.get("base_currency") or "USD"

    def money(value: object) -> str:
        return "n/a" if value is None else f"{value:,.0f} {currency}"

    if s["roi"] is None:
        roi = Figure("ROI", "n/a", "no CRM cost posted yet")
    else:
        roi = Figure("ROI", f"{s['roi']:.2f}x", f"{s['roi_pct']:,.1f} %: each {currency} spent returned "
                                                 f"{1 + s['roi']:.2f} {currency} of benefit")
    if s.get("roi_p05") is not None and s.get("roi_p95") is not None:
        roi = Figure(roi.label, roi.value, f"{roi.note}; 90 % bootstrap interval "
                                           f"{100 * s['roi_p05']:,.0f} % to {100 * s['roi_p95']:,.0f} %")
    point = data.payback_period
    if point is None:
        payback = Figure("Payback", "not yet", "cumulative benefit has not caught up with cumulative cost")
    else:
        payback = Figure("Payback", f"{s['payback_period_months']:g} months",
                         f"after go-live, in {_month(point['period_start'])}")
    figures = [
        roi,
        payback,
        Figure("NPV", money(s["npv"]), f"net benefit discounted at {_pct(_number(a.get('discount_rate')) or 0)} "
                                       "a year" if a.get("discount_rate") else "net benefit, discounted"),
        Figure("Benefit", money(s["cumulative_benefit"]), f"since go-live, as of {_date(s['as_of'])}"),
        Figure("Cost", money(s["cumulative_cost"]), "every CRM cost since the first was posted"),
    ]
    return Story(
        title="What the CRM returned",
        as_of=_date(s["as_of"]),
        figures=figures,
        assumptions=_assumptions(data, currency),
        not_included=_not_included(data),
    )


def _assumptions(data: ReportData, currency: str) -> list[str]:
    s, a, b = data.summary, data.assumptions, data.baseline
    lines = [
        f"Go-live was {_date(s['go_live'])}. The baseline is the {b['periods']} complete "
        f"{a.get('period') or 'period'}s from {_month(b['window_start'])} to "
        f"{_month(dt.date.fromisoformat(str(b['window_end'])) - dt.timedelta(days=1))}; every figure counts "
        f"events up to {_date(s['as_of'])}.",
    ]
    method = s.get("counterfactual_method") or "flat"
    lines.append(f"Revenue expected without the CRM (the counterfactual, method {method}): "
                 f"{COUNTERFACTUALS.get(method, method)}. Incremental revenue is revenue won minus that.")
    if (margin := _number(a.get("gross_margin"))) is not None:
        lines.append(f"Gross margin {_pct(margin)}: only {_pct(margin)} of incremental revenue counts as benefit; "
                     "the rest is what the sales cost to deliver.")
    if (share := _number(a.get("attribution_share"))) is not None:
        lines.append(f"Attribution {_pct(share)}: {_pct(share)} of each benefit is credited to the CRM, the rest "
                     "to everything else that changed at the same time.")
    if (risk := _number(a.get("risk_adjustment"))) is not None:
        lines.append(f"Risk adjustment {_pct(risk)}: total benefit is cut by {_pct(risk)} for what may not last."
                     if risk else "Risk adjustment 0 %: benefits are taken as measured, without a haircut.")
    if (rate := _number(a.get("discount_rate"))) is not None:
        lines.append(f"Discount rate {_pct(rate)} a year: money further from the start counts for less in the NPV.")
    arpa = _number(a.get("arpa_monthly"))
    lines.append(f"Each customer kept beyond the baseline churn is worth {arpa:,.0f} {currency} a month "
                 "(before margin and attribution)." if arpa is not None else
                 "Customers kept are not valued in money (no revenue per customer is configured).")
    if s.get("incremental_revenue_p05") is not None and s.get("incremental_revenue_p95") is not None:
        lines.append(f"Incremental revenue since go-live: 90 % bootstrap interval "
                     f"{s['incremental_revenue_p05']:,.0f} to {s['incremental_revenue_p95']:,.0f} {currency}.")
    accounts = sorted((k.removeprefix("finance.accounts."), v) for k, v in a.items()
                      if k.startswith("finance.accounts.") and v and v.startswith("crm_"))
    if accounts:
        listed = ", ".join(f"{account} ({category.removeprefix('crm_')})" for account, category in accounts)
        lines.append(f"CRM cost: every ledger line on accounts {listed}, in the period it was posted, "
                     "one-off and recurring alike.")
    return lines


def _not_included(data: ReportData) -> list[str]:
    a = data.assumptions
    lines = [
        "Benefits that are hard to price (a better customer experience, insight from the data, a stronger "
        "team): they show as KPIs (satisfaction, win rate, sales cycle), not as money.",
        "Costs not booked to the CRM ledger accounts, such as staff time spent on the rollout unless it "
        "was charged to one of them.",
        "Deals still open at the cut-off, and anything dated after it; the current, incomplete period.",
        f"{data.quarantined:,} row(s) that failed a row rule and were quarantined (see Data quality), out of "
        f"{data.loaded + data.quarantined:,}.",
    ]
    if (data.summary.get("counterfactual_method") or "flat") == "flat":
        lines.append("Market growth and seasonality: the flat counterfactual credits the CRM with any growth "
                     "the market would have brought anyway; the attribution share is the correction.")
    if _number(a.get("arpa_monthly")) is None:
        lines.append("The value of customers kept (no revenue per customer is configured).")
    return lines
