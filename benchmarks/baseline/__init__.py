"""A bare Django/DRF project doing the least the benchmark's requests must do (issue 11): the
yardstick the service is measured against in the same run. Not part of the product."""
