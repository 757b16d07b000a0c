"""The orders service: customers, products, orders, invoices and credit notes."""
