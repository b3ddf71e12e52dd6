from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering.django"
    label = "metering"
    verbose_name = "Metering"
