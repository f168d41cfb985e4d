"""
Tests for L{tenantgw.config.namespace}: the operator's annotations, host
allowance (contract section 3) and quota ceilings (section 2).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.config.model import FieldError, Quota, RateLimit
from tenantgw.config.namespace import (
    NamespacePolicy,
    clamp_quota,
    host_allowed,
    parse_namespace_policy,
)


class ParseNamespacePolicyTests(SynchronousTestCase):
    def test_no_annotations(self) -> None:
        self.assertEqual(parse_namespace_policy({}), (NamespacePolicy(), ()))

    def test_unrelated_annotations_ignored(self) -> None:
        policy, errors = parse_namespace_policy(
            {"kubectl.kubernetes.io/last-applied-configuration": "{}", "tenantgw.io/x": "1"}
        )
        self.assertEqual((policy, errors), (NamespacePolicy(), ()))

    def test_all_annotations(self) -> None:
        policy, errors = parse_namespace_policy(
            {
                "tenantgw.io/allowed-hosts": " Shop.Example.com , *.shop.example.com,,"
                "shop.example.com.",
                "tenantgw.io/max-requests-per-second": "2.5",
                "tenantgw.io/max-burst": " 20 ",
                "tenantgw.io/max-concurrent-requests": "500",
                "tenantgw.io/max-request-body-bytes": "0",
            }
        )
        self.assertEqual(errors, ())
        self.assertEqual(
            policy,
            NamespacePolicy(
                allowed_hosts=("shop.example.com", "*.shop.example.com"),
                max_requests_per_second=2.5,
                max_burst=20,
                max_concurrent_requests=500,
                max_request_body_bytes=0,
            ),
        )

    def test_bad_allowed_host_dropped_with_error(self) -> None:
        policy, errors = parse_namespace_policy(
            {"tenantgw.io/allowed-hosts": "a.example, a.*.example, 10.0.0.1, b.example"}
        )
        self.assertEqual(policy.allowed_hosts, ("a.example", "b.example"))
        path = 'metadata.annotations["tenantgw.io/allowed-hosts"]'
        self.assertEqual([error.path for error in errors], [path, path])
        self.assertIn("'a.*.example'", errors[0].message)
        self.assertIn("IP addresses", errors[1].message)

    def test_malformed_ceilings(self) -> None:
        """
        Each malformed ceiling is an error naming its annotation; the
        caller rejects the tenant rather than run without the ceiling.
        """
        cases = [
            (
                "tenantgw.io/max-requests-per-second",
                ["0", "-1", "abc", "1e3", "nan", "inf", "", "9" * 400],
            ),
            ("tenantgw.io/max-burst", ["0", "-5", "1.5", "ten", "1_000", "+3"]),
            ("tenantgw.io/max-concurrent-requests", ["0", "2.0", "many"]),
            ("tenantgw.io/max-request-body-bytes", ["-1", "10MiB", "1e6"]),
        ]
        for annotation, values in cases:
            for value in values:
                policy, errors = parse_namespace_policy({annotation: value})
                self.assertEqual(
                    [error.path for error in errors],
                    [f'metadata.annotations["{annotation}"]'],
                    (annotation, value),
                )
                self.assertIn(repr(value), errors[0].message)
                self.assertEqual(policy, NamespacePolicy())

    def test_errors_are_field_errors(self) -> None:
        _, errors = parse_namespace_policy({"tenantgw.io/max-burst": "x"})
        self.assertEqual(
            errors,
            (
                FieldError(
                    'metadata.annotations["tenantgw.io/max-burst"]',
                    "must be a whole number of at least 1, got 'x'",
                ),
            ),
        )


class HostAllowedTests(SynchronousTestCase):
    def test_exact(self) -> None:
        self.assertTrue(host_allowed("shop.example.com", ["shop.example.com"]))
        self.assertFalse(host_allowed("www.shop.example.com", ["shop.example.com"]))
        self.assertFalse(host_allowed("xshop.example.com", ["shop.example.com"]))

    def test_case_and_trailing_dot(self) -> None:
        self.assertTrue(host_allowed("SHOP.example.com.", ["shop.EXAMPLE.com"]))
        self.assertTrue(host_allowed("a.shop.example.com", ["*.Shop.Example.com."]))

    def test_wildcard_covers_one_or_more_labels(self) -> None:
        patterns = ["*.shop.example.com"]
        self.assertTrue(host_allowed("a.shop.example.com", patterns))
        self.assertTrue(host_allowed("a.b.shop.example.com", patterns))

    def test_wildcard_never_covers_apex(self) -> None:
        self.assertFalse(host_allowed("shop.example.com", ["*.shop.example.com"]))

    def test_wildcard_respects_label_boundary(self) -> None:
        self.assertFalse(host_allowed("evilshop.example.com", ["*.shop.example.com"]))
        self.assertFalse(host_allowed("example.com", ["*.shop.example.com"]))

    def test_claiming_wildcards(self) -> None:
        self.assertTrue(host_allowed("*.shop.example.com", ["*.shop.example.com"]))
        self.assertTrue(host_allowed("*.eu.shop.example.com", ["*.shop.example.com"]))
        self.assertFalse(host_allowed("*.shop.example.com", ["shop.example.com"]))
        self.assertFalse(host_allowed("*.shop.example.com", ["*.eu.shop.example.com"]))
        self.assertFalse(host_allowed("*.shop.example.com", ["a.shop.example.com"]))
        self.assertFalse(host_allowed("*.example.com", ["*.shop.example.com"]))

    def test_no_patterns(self) -> None:
        self.assertFalse(host_allowed("shop.example.com", []))
        self.assertFalse(host_allowed("shop.example.com", ()))

    def test_any_pattern_suffices(self) -> None:
        self.assertTrue(host_allowed("b.example", ["a.example", "*.x.example", "b.example"]))


class ClampQuotaTests(SynchronousTestCase):
    def test_no_ceilings(self) -> None:
        quota = Quota(rate=RateLimit(1000.0, 5000), max_concurrent_requests=10**6)
        self.assertEqual(clamp_quota(quota, NamespacePolicy()), (quota, ()))
        self.assertEqual(clamp_quota(Quota(), NamespacePolicy()), (Quota(), ()))

    def test_above_ceiling_clamped(self) -> None:
        policy = NamespacePolicy(
            max_requests_per_second=100.0,
            max_burst=150,
            max_concurrent_requests=50,
            max_request_body_bytes=1024,
        )
        quota = Quota(
            rate=RateLimit(500.0, 1000),
            max_concurrent_requests=51,
            max_request_body_bytes=1025,
        )
        clamped, warnings = clamp_quota(quota, policy)
        self.assertEqual(
            clamped,
            Quota(
                rate=RateLimit(100.0, 150),
                max_concurrent_requests=50,
                max_request_body_bytes=1024,
            ),
        )
        self.assertEqual(
            warnings,
            (
                "quota.requestsPerSecond 500 clamped to namespace ceiling 100",
                "quota.burst 1000 clamped to namespace ceiling 150",
                "quota.maxConcurrentRequests 51 clamped to namespace ceiling 50",
                "quota.maxRequestBodyBytes 1025 clamped to namespace ceiling 1024",
            ),
        )

    def test_at_or_below_ceiling_unchanged(self) -> None:
        policy = NamespacePolicy(
            max_requests_per_second=100.0,
            max_burst=200,
            max_concurrent_requests=50,
            max_request_body_bytes=0,
        )
        quota = Quota(
            rate=RateLimit(100.0, 10),
            per_client=RateLimit(1.5, 2),
            max_concurrent_requests=50,
            max_request_body_bytes=0,
        )
        self.assertEqual(clamp_quota(quota, policy), (quota, ()))

    def test_unset_takes_ceiling(self) -> None:
        policy = NamespacePolicy(
            max_requests_per_second=2.5,
            max_concurrent_requests=50,
            max_request_body_bytes=1024,
        )
        clamped, warnings = clamp_quota(Quota(), policy)
        self.assertEqual(
            clamped,
            Quota(
                rate=RateLimit(2.5, 3),
                per_client=None,
                max_concurrent_requests=50,
                max_request_body_bytes=1024,
            ),
        )
        self.assertEqual(
            warnings,
            (
                "quota.requestsPerSecond unset; namespace ceiling 2.5 applies (burst 3)",
                "quota.maxConcurrentRequests unset; namespace ceiling 50 applies",
                "quota.maxRequestBodyBytes unset; namespace ceiling 1024 applies",
            ),
        )

    def test_unset_rate_takes_burst_ceiling_too(self) -> None:
        policy = NamespacePolicy(max_requests_per_second=100.0, max_burst=7)
        clamped, _ = clamp_quota(Quota(), policy)
        self.assertEqual(clamped.rate, RateLimit(100.0, 7))

    def test_burst_ceiling_alone_creates_no_bucket(self) -> None:
        self.assertEqual(clamp_quota(Quota(), NamespacePolicy(max_burst=10)), (Quota(), ()))

    def test_per_client_bounded_by_tenant_ceilings(self) -> None:
        policy = NamespacePolicy(max_requests_per_second=10.0, max_burst=20)
        quota = Quota(rate=RateLimit(5.0, 5), per_client=RateLimit(50.0, 100))
        clamped, warnings = clamp_quota(quota, policy)
        self.assertEqual(clamped.rate, RateLimit(5.0, 5))
        self.assertEqual(clamped.per_client, RateLimit(10.0, 20))
        self.assertEqual(
            warnings,
            (
                "quota.perClient.requestsPerSecond 50 clamped to namespace ceiling 10",
                "quota.perClient.burst 100 clamped to namespace ceiling 20",
            ),
        )

    def test_clamped_quota_is_within_every_ceiling(self) -> None:
        """Whatever the tenant asked, nothing comes out above a ceiling."""
        policy = NamespacePolicy(
            max_requests_per_second=3.0,
            max_burst=4,
            max_concurrent_requests=5,
            max_request_body_bytes=6,
        )
        for quota in [
            Quota(),
            Quota(rate=RateLimit(1e9, 10**9), per_client=RateLimit(1e9, 10**9)),
            Quota(per_client=RateLimit(0.5, 1), max_concurrent_requests=1),
        ]:
            clamped, _ = clamp_quota(quota, policy)
            for bucket in (clamped.rate, clamped.per_client):
                if bucket is not None:
                    self.assertLessEqual(bucket.requests_per_second, 3.0)
                    self.assertLessEqual(bucket.burst, 4)
            assert clamped.rate is not None
            assert clamped.max_concurrent_requests is not None
            assert clamped.max_request_body_bytes is not None
            self.assertLessEqual(clamped.max_concurrent_requests, 5)
            self.assertLessEqual(clamped.max_request_body_bytes, 6)
