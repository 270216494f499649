"""Customer duplicate detection: exact matches, the review band, and never a blind merge."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from accord.q2c.matching import (
    MATCH_SCORE,
    REVIEW_SCORE,
    Candidate,
    Decision,
    match_customer,
    normalise_domain,
    normalise_name,
    normalise_tax_id,
)

ERP = [
    Candidate("c-bright", "Brightline Partners Ltd", "GB123456789", "brightline.example", "101"),
    Candidate("c-north", "Northwind Analytics Inc.", "12-3456789", "northwind.example", "102"),
]


def test_names_lose_case_accents_punctuation_and_legal_forms() -> None:
    assert normalise_name("Brightline Partners Ltd.") == "brightline partners"
    assert normalise_name("KRAFTWERK Maschinenbau GmbH") == "kraftwerk maschinenbau"
    assert normalise_name("Café & Co") == "cafe and"


def test_domains_and_tax_ids_are_compared_in_one_canonical_form() -> None:
    assert normalise_domain("https://www.Brightline.example/about") == "brightline.example"
    assert normalise_domain("") is None
    assert normalise_tax_id("gb 123.456-789") == "GB123456789"
    assert normalise_tax_id(None) is None


def test_same_tax_id_is_the_same_customer_whatever_the_name() -> None:
    me = Candidate("new", "BLP Holdings", "GB 123 456 789", None)
    result = match_customer(me, ERP)
    assert result.decision is Decision.MATCH
    assert result.candidate is not None and result.candidate.erp_id == "101"


def test_same_domain_matches_when_tax_ids_do_not_contradict() -> None:
    result = match_customer(Candidate("new", "Brightline", None, "www.brightline.example"), ERP)
    assert result.decision is Decision.MATCH


def test_same_domain_with_another_tax_id_is_only_a_possible_duplicate() -> None:
    me = Candidate("new", "Brightline Partners", "GB999999999", "brightline.example")
    assert match_customer(me, ERP).decision is Decision.POSSIBLE_DUPLICATE


def test_a_name_in_the_review_band_becomes_a_possible_duplicate_never_a_merge() -> None:
    me = Candidate("new", "Bright Line Partners Group", None, None)
    result = match_customer(me, ERP)
    assert result.decision is Decision.POSSIBLE_DUPLICATE
    assert REVIEW_SCORE <= result.score < MATCH_SCORE
    assert result.candidate is not None and result.candidate.id == "c-bright"


def test_an_unrelated_name_is_new() -> None:
    result = match_customer(Candidate("new", "Kraftwerk Maschinenbau GmbH", None, None), ERP)
    assert result.decision is Decision.NEW
    assert result.candidate is None


def test_two_certain_matches_are_ambiguous() -> None:
    twins = [*ERP, Candidate("c-bright-2", "Brightline Partners Limited", None, None, "103")]
    me = Candidate("new", "Brightline Partners", "GB123456789", None)
    assert match_customer(me, twins).decision is Decision.POSSIBLE_DUPLICATE


def test_a_record_is_not_its_own_duplicate() -> None:
    assert match_customer(ERP[0], ERP[:1]).decision is Decision.NEW


@given(st.text(min_size=1, max_size=40))
def test_normalising_a_name_twice_changes_nothing(name: str) -> None:
    once = normalise_name(name)
    assert normalise_name(once) == once


@given(
    st.text(alphabet=st.characters(categories=("L",)), min_size=3, max_size=30).filter(
        lambda n: normalise_name(n) != ""
    )
)
def test_an_identical_customer_under_another_id_always_matches(name: str) -> None:
    me = Candidate("a", name, None, None)
    assert match_customer(me, [Candidate("b", name, None, None)]).decision is Decision.MATCH


@given(st.text(max_size=30), st.text(max_size=30))
def test_different_tax_ids_never_merge_automatically(a: str, b: str) -> None:
    one = Candidate("a", "Acme Widgets", "X1" + a, None)
    two = Candidate("b", "Acme Widgets", "Y2" + b, None)
    if normalise_tax_id(one.tax_id) != normalise_tax_id(two.tax_id):
        assert match_customer(one, [two]).decision is not Decision.MATCH
