"""Pages beside the APIs: the offline docs, the price calculator, run reports and the input drift view."""
