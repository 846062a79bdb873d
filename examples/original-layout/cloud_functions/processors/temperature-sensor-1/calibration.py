"""Bench calibration of temperature-sensor-1: it reads low by a fixed offset."""

OFFSET_C = 1.5


def corrected(celsius: float) -> float:
    return round(celsius + OFFSET_C, 3)
