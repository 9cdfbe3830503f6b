"""Placeholder router (being written): see issue 6."""

from fastapi import APIRouter

router = APIRouter()
