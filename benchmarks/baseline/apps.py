from django.apps import AppConfig


class BaselineConfig(AppConfig):
    name = "benchmarks.baseline"
    label = "baseline"
