-- emporium_order_place(): checkout as one PostgreSQL statement.
--
-- Does what emporium.orders.services._order_place_portable does (the path
-- SQLite takes), in one round trip: lock the cart row, take stock with
-- conditional UPDATEs in product-id order, write the order, its items, the
-- first entry of the owner's order stream and the outbox events, remove the
-- bought cart lines. Refusals raise with SQLSTATE EM401 (no such active user),
-- EM404 (empty cart) or EM409 (not enough stock; DETAIL is the JSON list of
-- short lines), so nothing of a refused checkout is kept.
--
-- The caller passes what Python owns: the low-stock threshold, the order's
-- row_uuid with the shipping address and phone already sealed with it (and the
-- phone's blind index; the keys never reach the database), the new order's
-- status (OrderStatus.PENDING_PAYMENT), the outbox event types
-- (events.ORDER_PLACED, events.STOCK_LOW) and the events' correlation (the
-- request id and trace context of the checkout, emporium.core.correlation).
--
-- Installed by the orders migrations (manage.py sqlmigrations writes them);
-- emporium/orders/tests/test_place_paths.py runs this function and the Python
-- checkout on the same cases and compares what each wrote, row for row.
-- docs/adr/0017-checkout-in-one-statement.md explains why it exists.

CREATE OR REPLACE FUNCTION emporium_order_place(
    p_user_id bigint,
    p_low_stock integer,
    p_row_uuid uuid,
    p_shipping_address text,
    p_phone text,
    p_phone_index text,
    p_status text,
    p_order_placed text,
    p_stock_low text,
    p_correlation jsonb
)
RETURNS TABLE (order_id bigint, placed_at timestamptz, total text, items jsonb, event_id bigint)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_cart bigint;
    v_order bigint;
    v_total numeric(14, 2) := 0;
    v_line record;
    v_taken record;
    v_bought bigint[] := '{}';
    v_lines jsonb := '[]';
    v_short jsonb := '[]';
    v_items jsonb;
    v_event bigint;
BEGIN
    PERFORM 1 FROM accounts_user WHERE id = p_user_id AND is_active;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'EM401', MESSAGE = 'no such active user';
    END IF;

    -- Two checkouts of one cart run one after the other; adding items (a key-share
    -- lock on the cart row) is not blocked.
    SELECT id INTO v_cart FROM carts_shoppingcart WHERE user_id = p_user_id
        FOR NO KEY UPDATE;

    FOR v_line IN
        SELECT id, product_id, quantity FROM carts_cartitem
        WHERE cart_id = v_cart ORDER BY product_id
    LOOP
        UPDATE catalog_product
            SET stock_quantity = stock_quantity - v_line.quantity, updated_at = now()
            WHERE id = v_line.product_id AND stock_quantity >= v_line.quantity
            RETURNING price, stock_quantity, name INTO v_taken;
        IF FOUND THEN
            v_bought := v_bought || v_line.id;
            v_total := v_total + v_taken.price * v_line.quantity;
            v_lines := v_lines || jsonb_build_object(
                'product_id', v_line.product_id,
                'quantity', v_line.quantity,
                'price', v_taken.price::text,
                'name', v_taken.name,
                'stock_left', v_taken.stock_quantity
            );
        ELSE
            v_short := v_short || jsonb_build_object(
                'product', v_line.product_id, 'requested', v_line.quantity
            );
        END IF;
    END LOOP;

    IF v_cart IS NULL OR (jsonb_array_length(v_lines) = 0 AND jsonb_array_length(v_short) = 0) THEN
        RAISE EXCEPTION USING ERRCODE = 'EM404', MESSAGE = 'cart_empty';
    END IF;
    IF jsonb_array_length(v_short) > 0 THEN
        SELECT jsonb_agg(
                   s.entry || jsonb_build_object(
                       'name', p.name, 'available', COALESCE(p.stock_quantity, 0)
                   ) ORDER BY s.ord
               )
          INTO v_short
          FROM jsonb_array_elements(v_short) WITH ORDINALITY AS s(entry, ord)
          LEFT JOIN catalog_product p ON p.id = (s.entry ->> 'product')::bigint;
        RAISE EXCEPTION USING ERRCODE = 'EM409', MESSAGE = 'insufficient_stock',
            DETAIL = v_short::text;
    END IF;

    -- The address and phone arrive sealed (AES-GCM, bound to p_row_uuid) and the
    -- phone's blind index computed: the plaintext never reaches the database.
    INSERT INTO orders_order
        (created_at, updated_at, order_status, total_amount, user_id, confirmation_sent_at,
         row_uuid, shipping_address, phone, phone_index)
        VALUES (now(), now(), p_status, v_total, p_user_id, NULL,
                p_row_uuid, p_shipping_address, p_phone, p_phone_index)
        RETURNING id INTO v_order;

    -- The first entry of the owner's order stream (realtime app): its id orders ?since=.
    INSERT INTO realtime_orderevent (user_id, order_id, from_status, to_status, reason, created_at)
        VALUES (p_user_id, v_order, '', p_status, '', now())
        RETURNING id INTO v_event;

    WITH written AS (
        INSERT INTO orders_orderitem
            (created_at, updated_at, quantity, price, order_id, product_id, product_name)
        SELECT now(), now(), l.quantity, l.price::numeric, v_order, l.product_id, l.name
          FROM jsonb_to_recordset(v_lines)
               AS l(product_id bigint, quantity integer, price text, name text)
         ORDER BY l.product_id
        RETURNING id, product_id, quantity, price, product_name
    )
    SELECT jsonb_agg(jsonb_build_object(
               'id', id, 'product_id', product_id, 'quantity', quantity,
               'price', price::text, 'name', product_name
           ) ORDER BY product_id)
      INTO v_items FROM written;

    -- Only the lines bought: one added while this checkout ran stays in the cart.
    DELETE FROM carts_cartitem WHERE id = ANY (v_bought);

    INSERT INTO integrations_outboxevent
        (id, event_type, aggregate_type, aggregate_id, payload, created_at, published_at,
         attempts, last_error, correlation)
    VALUES (
        gen_random_uuid(), p_order_placed, 'order', v_order::text,
        jsonb_build_object(
            'order_id', v_order,
            'user_id', p_user_id,
            'total_amount', v_total::text,
            'items', (SELECT jsonb_agg(jsonb_build_object(
                          'product_id', l -> 'product_id',
                          'quantity', l -> 'quantity',
                          'price', l -> 'price'))
                        FROM jsonb_array_elements(v_lines) AS l)
        ),
        now(), NULL, 0, '', p_correlation
    );

    -- p_stock_low once, when a line takes the stock from above the threshold to at or below it.
    INSERT INTO integrations_outboxevent
        (id, event_type, aggregate_type, aggregate_id, payload, created_at, published_at,
         attempts, last_error, correlation)
    SELECT gen_random_uuid(), p_stock_low, 'product', l.product_id::text,
           jsonb_build_object('product_id', l.product_id, 'stock_quantity', l.stock_left),
           now(), NULL, 0, '', p_correlation
      FROM jsonb_to_recordset(v_lines)
           AS l(product_id bigint, quantity integer, stock_left integer)
     WHERE l.stock_left <= p_low_stock AND p_low_stock < l.stock_left + l.quantity
     ORDER BY l.product_id;

    RETURN QUERY SELECT v_order, now(), v_total::text, v_items, v_event;
END;
$fn$;

-- uninstall
DROP FUNCTION IF EXISTS emporium_order_place(
    bigint, integer, uuid, text, text, text, text, text, text, jsonb
);
