"""factory_boy factories for every model, shared by the whole suite."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth.hashers import make_password
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from emporium.accounts.models import User
from emporium.accounts.roles import Role, user_role_assign
from emporium.catalog import services as catalog_services
from emporium.catalog.models import Category, Product
from emporium.orders.models import Order, OrderItem, OrderStatus
from emporium.payments.models import Payment, PaymentMethod, PaymentStatus
from emporium.reviews import services as review_services
from emporium.reviews.models import Review

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"User{n}")
    password = factory.LazyFunction(lambda: make_password(PASSWORD))


class StaffFactory(UserFactory):
    """A back-office account; by default in the admin role (every permission).

    ``StaffFactory(role=Role.SUPPORT)`` makes one of another role. Built (unsaved)
    accounts have no groups.
    """

    is_staff = True

    @factory.post_generation
    def role(self, create: bool, extracted: Role | None, **kwargs: object) -> None:
        if create:
            user_role_assign(user=self, role=extracted or Role.ADMIN)  # type: ignore[arg-type]


def make_category(name: str = "Category", parent: Category | None = None) -> Category:
    return catalog_services.category_create(name=name, parent=parent)


class CategoryFactory(factory.django.DjangoModelFactory):
    """Categories go through the service so their tree path is right."""

    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"Category {n}")
    parent = None

    @classmethod
    def _create(cls, model_class: type[Category], *args: object, **kwargs: object) -> Category:
        return catalog_services.category_create(
            name=kwargs["name"],  # type: ignore[arg-type]
            parent=kwargs.get("parent"),  # type: ignore[arg-type]
        )


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Product {n}")
    description = "A product for tests."
    sku = factory.Sequence(lambda n: f"SKU-{n:06d}")
    price = Decimal("10.00")
    stock_quantity = 10
    category = factory.SubFactory(CategoryFactory)
    attributes = factory.LazyFunction(dict)


def make_review(*, product: Product, user: User, rating: int = 4, comment: str = "") -> Review:
    return review_services.review_create(product=product, user=user, rating=rating, comment=comment)


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    user = factory.SubFactory(UserFactory)
    order_status = OrderStatus.PENDING_PAYMENT
    total_amount = Decimal("20.00")


class OrderItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderItem

    order = factory.SubFactory(OrderFactory)
    product = factory.SubFactory(ProductFactory)
    product_name = factory.LazyAttribute(lambda item: item.product.name)
    quantity = 2
    price = Decimal("10.00")


class PaymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Payment

    order = factory.SubFactory(OrderFactory)
    payment_method = PaymentMethod.CARD
    amount = Decimal("20.00")
    status = PaymentStatus.PENDING


def client_for(user: User) -> APIClient:
    """An API client that sends a valid access token for ``user``."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client
