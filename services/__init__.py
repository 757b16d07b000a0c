"""The four Salesbook services: orders, payments, closing, analytics."""
