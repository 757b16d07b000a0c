# One image for every Salesbook service: the command picks what runs, e.g.
#   docker run salesbook serve orders      docker run salesbook migrate
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install . \
    && useradd --system --home-dir /var/lib/salesbook --create-home salesbook

# The services listen on all interfaces inside the container; the data folder only holds a
# generated signing secret when SALESBOOK_SECRET_KEY is unset, which production refuses.
ENV SALESBOOK_HOST=0.0.0.0 \
    SALESBOOK_PORT=8000 \
    SALESBOOK_DATA_DIR=/var/lib/salesbook
USER salesbook
WORKDIR /var/lib/salesbook
EXPOSE 8000

ENTRYPOINT ["salesbook"]
CMD ["--help"]
